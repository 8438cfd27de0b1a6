"""Run a sweep's cells as submitit jobs (SLURM, or submitit's local executor), and say where each
cell stands.

``submit_sweep`` checks the sweep directory as the local sweep does (``sweep.prepare``), skips done
cells and cells whose job is still queued or running, and submits the rest: one job per cell, as
one job array per ``MaxArraySize`` when ``ClusterOptions.array`` (at most ``array_limit`` running
at once). Each job runs ``cell_job.CellJob``; its results land in the same ``cell.json`` files the
local executor writes, so ``table`` reads either alike. ``status`` combines ``cell.json`` with the
jobs' own records (``cell_job``) into one row per cell: pending, running, requeued, done, failed,
stopped (checkpointed after a signal, waiting to be resubmitted), lost (its job is gone without a
verdict) or missing (never submitted).

``executor="submitit-local"`` runs the same jobs through submitit's ``LocalExecutor`` on this
machine (the code path minus ``sbatch``): what the tests use, and a way to try a sweep's jobs
before a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from diffdrl.harness.cell_job import (
    ACTIVE,
    CellJob,
    log_dir,
    read_job,
    read_submitted,
    write_submitted,
)
from diffdrl.harness.slurm import ClusterOptions, max_array_size, require_submitit, sbatch_parameters
from diffdrl.harness.sweep import Cell, Sweep, prepare, read_cell

EXECUTORS = ("slurm", "submitit-local")
STATES = ("pending", "running", "requeued", "done", "failed", "stopped", "lost", "missing")


def _require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise ValueError(
            "--executor slurm submits with sbatch, which is not on PATH (run it on the cluster's "
            "login node, or try --executor submitit-local on this machine)"
        )


def _executor(kind: str, folder: Path, options: ClusterOptions, job_name: str):
    submitit = require_submitit()
    if kind == "slurm":
        _require_sbatch()
        executor = submitit.SlurmExecutor(folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(**sbatch_parameters(options, job_name))
        return executor
    executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeues)
    executor.update_parameters(
        timeout_min=options.time_minutes,
        gpus_per_node=options.gpus_per_job,
        signal_delay_s=options.signal_delay_s,
        setup=list(options.setup),
    )
    return executor


def _queued(submitted: dict) -> bool:
    """Whether the job of a ``submitted.json`` record is still queued or running."""
    job_id = str(submitted.get("job_id"))
    if submitted.get("executor") == "submitit-local":
        if submitted.get("host") != socket.gethostname():
            return True  # cannot tell from here: assume it is
        try:
            os.kill(int(job_id), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:
            return True
        return True
    if shutil.which("squeue") is None:
        return True
    try:
        listed = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "-j", job_id.split("_")[0]],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return True
    return job_id in listed


def cell_state(out: str | Path, cell: Cell, check_queue: bool = True) -> tuple[str, dict | None, dict | None]:
    """(state, ``cell.json`` record, job record) of one cell; ``STATES`` lists the states."""
    record = read_cell(cell.directory(out))
    logs = log_dir(out, cell)
    submitted, job = read_submitted(logs), read_job(logs)
    if record is not None and record["status"] == "done":
        return "done", record, job
    if submitted is not None:
        current = job is not None and str(job.get("job_id")) == str(submitted["job_id"])
        state = job["state"] if current else "pending"
        if state in ACTIVE:
            if check_queue and not _queued(submitted):
                return "lost", record, job
            return state, record, job
    if record is not None:
        return (
            {"running": "lost" if submitted else "running"}.get(record["status"], record["status"]),
            record,
            job,
        )
    return "missing", record, job


def submit_sweep(
    sweep: Sweep,
    out: str | Path,
    options: ClusterOptions,
    executor: str = "slurm",
    echo: Callable[[str], None] = print,
    wait: bool = False,
) -> list:
    """Submit every cell of ``sweep`` that is neither done nor queued; returns submitit's jobs.

    Raises ``ValueError`` before anything is written when submitit (or, for SLURM, ``sbatch``) is
    missing, a preset is missing or ``out`` holds something else. With ``wait``, returns once
    every submitted job has ended.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    require_submitit()
    if executor == "slurm":
        _require_sbatch()
    out = prepare(sweep, out)
    cells, todo = sweep.cells(), []
    for i, cell in enumerate(cells, 1):
        prefix = f"[{i}/{len(cells)}] {cell.name}"
        state, record, job = cell_state(out, cell)
        if state == "done":
            echo(f"{prefix}: done already, skipped")
        elif state in ACTIVE:
            echo(f"{prefix}: {state} already as job {read_submitted(log_dir(out, cell))['job_id']}, skipped")
        else:
            todo.append(cell)
    if not todo:
        return []
    job_name = f"diffdrl-{out.absolute().name}"
    runner = _executor(executor, out / "slurm" / "submitit", options, job_name)
    chunk = len(todo)
    if executor == "slurm":
        chunk = min(chunk, (max_array_size() or 1001) - 1) if options.array else 1
    jobs = []
    for start in range(0, len(todo), max(chunk, 1)):
        part = todo[start : start + chunk]
        calls = [CellJob(sweep.to_dict(), cell, out, options.gpus_per_job) for cell in part]
        if len(calls) > 1:
            jobs += runner.submit_array(calls)
        else:
            jobs += [runner.submit(c) for c in calls]
    now, host = time.time(), socket.gethostname()
    for cell, job in zip(todo, jobs, strict=True):
        record = {"job_id": str(job.job_id), "executor": executor, "host": host, "submitted": now}
        write_submitted(log_dir(out, cell), record)
        echo(f"{cell.name}: submitted as job {job.job_id}")
    if wait:
        for job in jobs:
            job.wait()
    return jobs


def status(out: str | Path, check_queue: bool = True) -> list[dict]:
    """One row per cell of the sweep at ``out``: cell, state, steps reached, last score, job id,
    requeues and, for failed cells, the error."""
    from diffdrl.harness.table import select_keys
    from diffdrl.training.checkpoint import checkpoints

    out = Path(out)
    grid = out / "sweep.json"
    if not grid.is_file():
        raise ValueError(f"{out} is not a sweep directory (no sweep.json)")
    try:
        sweep = Sweep(**json.loads(grid.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{grid} is not a sweep's grid: {err}") from None
    rows = []
    for cell in sweep.cells():
        state, record, job = cell_state(out, cell, check_queue)
        saved = checkpoints(cell.directory(out))
        step = record["step"] if state == "done" and record else (saved[-1][0] if saved else None)
        score = None
        if state == "done" and record and record.get("scores"):
            key = (select_keys([record]) or sorted(record["scores"]))[0]
            score = (key, record["scores"][key])
        submitted = read_submitted(log_dir(out, cell))
        rows.append(
            {
                "cell": cell.name,
                "state": state,
                "step": step,
                "score": score,
                "job_id": None if submitted is None else submitted["job_id"],
                "requeues": 0 if job is None else job.get("requeues", 0),
                "error": record.get("error") if record and state == "failed" else None,
            }
        )
    return rows


def status_text(rows: list[dict]) -> str:
    """``status`` rows as an aligned text table, then a count per state."""
    head = ("cell", "state", "steps", "last score", "job", "requeues")
    lines = [
        (
            r["cell"],
            r["state"],
            "—" if r["step"] is None else str(r["step"]),
            "—" if r["score"] is None else f"{r['score'][0]} {r['score'][1]:.3f}",
            r["job_id"] or "—",
            str(r["requeues"]),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in column) for column in zip(head, *lines, strict=True)]
    text = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (head, *lines)
    ]
    text += [f"{r['cell']}: {r['error']}" for r in rows if r["error"]]
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    text.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(text) + "\n"
