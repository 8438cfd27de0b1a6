"""Sweeps whose cells are submitit jobs, run through submitit's own ``LocalExecutor``: the SLURM
code path minus ``sbatch`` (``--executor submitit-local``). The jobs are real processes: a job
process (submitit's), and under it the cell's own process (training, evaluation)."""

import json
import os
import signal
import subprocess
import sys
import time

# submitit is part of the test setup (the dev extra): without it this module fails, never skips
import submitit  # noqa: F401
from safetensors.torch import load_file

from diffdrl.cli import main
from diffdrl.harness.cell_job import CellJob, cell_command, log_dir, read_job, write_submitted
from diffdrl.harness.slurm import ClusterOptions
from diffdrl.harness.submit import cell_state, status, status_text, submit_sweep
from diffdrl.harness.sweep import Cell, Sweep, read_cell
from diffdrl.training.checkpoint import checkpoints
from helpers.sweeps import sweep_argv
from helpers.tiny import TINY


def argv(out, executor, methods="encdiff,dyga", seeds="0,1", steps=2, *extra):
    executor_flags = ["--executor", executor, "--wait"] if executor != "local" else []
    return [*sweep_argv(out, *extra, methods=methods, seeds=seeds, steps=steps), *executor_flags]


def test_submitit_sweep_gives_the_local_sweeps_table(tmp_path, capsys):
    local, jobs = tmp_path / "local", tmp_path / "jobs"
    # the local sweep in a fresh process, as the jobs' cells run: the same float results to the
    # last bit (this test process, with its imports and thread settings, rounds differently)
    command = [sys.executable, "-m", "diffdrl", *argv(local, "local")]
    assert subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True).returncode == 0
    assert main(argv(jobs, "submitit-local")) == 0
    printed = capsys.readouterr().out
    assert printed.count("submitted as job") == 4
    assert "| encdiff | tiny-cpu | 2 |" in printed  # the summary after --wait

    for sweep in (local, jobs):
        assert main(["table", str(sweep), "--out", str(sweep / "table")]) == 0
    assert (jobs / "table.md").read_text() == (local / "table.md").read_text()
    assert (jobs / "table.csv").read_text() == (local / "table.csv").read_text()
    for cell in Sweep(["encdiff", "dyga"], ["synth-shapes3d"], [0, 1]).cells():
        mine, theirs = read_cell(cell.directory(jobs)), read_cell(cell.directory(local))
        assert mine["status"] == "done" and (mine["step"], mine["scores"]) == (
            theirs["step"],
            theirs["scores"],
        )
        logs = log_dir(jobs, cell)
        assert read_job(logs)["state"] == "done" and "done" in (logs / "cell.log").read_text()
    rows = status(jobs)
    assert [r["state"] for r in rows] == ["done"] * 4 and all(r["step"] == 2 for r in rows)
    assert rows[0]["score"][0] == "mig_fast" and rows[0]["job_id"]

    assert main(argv(jobs, "submitit-local")) == 0  # the same command again: nothing to submit
    assert capsys.readouterr().out.count("done already, skipped") == 4


def _wait_for(condition, what, timeout=300.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_preempted_job_is_requeued_and_ends_bit_identical(tmp_path):
    sweep = Sweep(
        ["encdiff"], ["synth-shapes3d"], [0], metrics=["mig"], metrics_preset="fast",
        overrides=[*TINY, "train.steps=30"],
    )  # fmt: skip
    cell, options = sweep.cells()[0], ClusterOptions(time_minutes=30)
    quiet = submit_sweep(sweep, tmp_path / "quiet", options, "submitit-local", echo=lambda _: None)
    (job,) = submit_sweep(sweep, tmp_path / "stopped", options, "submitit-local", echo=lambda _: None)
    directory, logs = cell.directory(tmp_path / "stopped"), log_dir(tmp_path / "stopped", cell)
    _wait_for(lambda: checkpoints(directory) and (read_job(logs) or {}).get("pid"), "a checkpoint")
    os.kill(read_job(logs)["pid"], signal.SIGUSR2)  # what SLURM sends signal_delay_s before the limit
    job.wait()
    quiet[0].wait()

    record = read_cell(directory)
    assert record["status"] == "done" and record["step"] == 30
    state = read_job(logs)
    assert state["state"] == "done" and state["requeues"] == 1 and state["attempt"] == 2
    log = (logs / "cell.log").read_text()
    assert "stopped by SIGTERM at step" in log, log
    stopped_at = int(log.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert 2 <= stopped_at < 30  # stopped mid-training, then resumed
    reference = cell.directory(tmp_path / "quiet")
    assert read_cell(reference)["scores"] == record["scores"]
    for name in ("model.safetensors", "ema.safetensors"):
        mine = load_file(directory / "checkpoints" / "step_30" / name)
        theirs = load_file(reference / "checkpoints" / "step_30" / name)
        assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine)
    logged = [json.loads(r)["step"] for r in (directory / "train_log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 31))  # continued where it stopped, nothing repeated
    (row,) = status(tmp_path / "stopped")
    assert (row["state"], row["step"], row["requeues"]) == ("done", 30, 1)


def test_failed_cell_is_reported_others_finish_and_rerun_resubmits_it_alone(tmp_path, capsys):
    out = tmp_path / "sweep"
    diverging = argv(out, "submitit-local", "encdiff,dyga", "0", 2, "dyga:train.lr=1e30")
    assert main(diverging) == 1
    captured = capsys.readouterr()
    assert "1 of 2 cells failed" in captured.err
    done, failed = (read_cell(Cell("synth-shapes3d", m, 0).directory(out)) for m in ("encdiff", "dyga"))
    assert done["status"] == "done" and failed["status"] == "failed"
    assert failed["error"].startswith("NonFiniteLossError: loss is nan")

    assert main(["sweep", "status", str(out)]) == 0
    table = capsys.readouterr().out
    assert (
        "synth-shapes3d/dyga/seed0: NonFiniteLossError: loss is nan" in table and "1 done, 1 failed" in table
    )

    stamps = {p: p.stat().st_mtime_ns for p in Cell("synth-shapes3d", "encdiff", 0).directory(out).rglob("*")}
    assert main(diverging) == 1  # again: only the failed cell is submitted (and fails again)
    printed = capsys.readouterr().out
    assert "encdiff/seed0: done already, skipped" in printed
    assert printed.count("submitted as job") == 1 and "dyga/seed0: submitted as job" in printed
    assert {
        p: p.stat().st_mtime_ns for p in Cell("synth-shapes3d", "encdiff", 0).directory(out).rglob("*")
    } == stamps


def test_a_cell_process_that_dies_is_failed_with_its_logs_last_line(tmp_path):
    sweep = Sweep(["encdiff"], ["synth-shapes3d"], [0])
    cell = sweep.cells()[0]
    job = CellJob(sweep.to_dict(), cell, tmp_path)
    job.logs.mkdir(parents=True)
    (job.logs / "cell.log").write_text("== attempt\nstep 3\nSegmentation fault (core dumped)\n\n")
    record = job._verdict(-signal.SIGKILL, launched=time.time())
    assert record["status"] == "failed"
    assert record["error"] == "cell process ended (killed by SIGKILL): Segmentation fault (core dumped)"
    assert read_cell(cell.directory(tmp_path))["error"] == record["error"]
    assert record["preset"] == "tiny-cpu" and record["seed"] == 0  # a rerun sees the same cell
    assert read_job(job.logs)["state"] == "failed"


def test_cell_states_from_the_job_records(tmp_path):
    sweep = Sweep(["encdiff"], ["synth-shapes3d"], [0, 1, 2, 3])
    (tmp_path / "sweep.json").write_text(json.dumps(sweep.to_dict()))
    cells = sweep.cells()
    mine = {"executor": "submitit-local", "host": os.uname().nodename, "submitted": 0.0}
    write_submitted(log_dir(tmp_path, cells[0]), {**mine, "job_id": str(os.getpid())})  # queued, not started
    write_submitted(log_dir(tmp_path, cells[1]), {**mine, "job_id": str(os.getpid())})
    (log_dir(tmp_path, cells[1]) / "job.json").write_text(
        json.dumps({"state": "requeued", "job_id": str(os.getpid()), "requeues": 2})
    )
    write_submitted(log_dir(tmp_path, cells[2]), {**mine, "job_id": "999999999"})  # no such process
    (log_dir(tmp_path, cells[2]) / "job.json").write_text(
        json.dumps({"state": "running", "job_id": "999999999"})
    )
    states = [cell_state(tmp_path, c)[0] for c in cells]
    assert states == ["pending", "requeued", "lost", "missing"]
    rows = status(tmp_path)
    assert [(r["job_id"], r["requeues"]) for r in rows[:2]] == [(str(os.getpid()), 0), (str(os.getpid()), 2)]
    text = status_text(rows)
    assert text.splitlines()[0].split() == ["cell", "state", "steps", "last", "score", "job", "requeues"]
    assert text.splitlines()[-1] == "1 pending, 1 requeued, 1 lost, 1 missing"


def test_several_gpus_run_the_cell_under_torchrun(tmp_path):
    one = cell_command(tmp_path / "spec.json", 1)
    assert one[1:] == ["-u", "-m", "diffdrl.harness.cell_job", str(tmp_path / "spec.json")]
    four = cell_command(tmp_path / "spec.json", 4)
    assert four[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    assert four[5] == "4" and four[-3:] == ["-m", "diffdrl.harness.cell_job", str(tmp_path / "spec.json")]
