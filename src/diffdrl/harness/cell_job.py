"""One sweep cell as a submitit job: what runs on the cluster node, preemption-safe.

The job (``CellJob``, pickled by submitit) starts the cell in a child process of its own,
``python -m diffdrl.harness.cell_job SPEC`` (under ``torchrun`` with one process per GPU when the
job has several), which trains and evaluates it with ``run_cell`` exactly as the local
sweep does, and waits. Its log and state live beside the sweep::

    SWEEP/slurm/<dataset>/<method>/seed<k>/cell.log        the child's output, every attempt
    SWEEP/slurm/<dataset>/<method>/seed<k>/job.json        state, job id, attempts, requeues
    SWEEP/slurm/<dataset>/<method>/seed<k>/submitted.json  the job id it was last submitted as
    SWEEP/slurm/submitit/                                  submitit's pickles, sbatch scripts, logs

Time limits and preemption: SLURM sends submitit's signal (USR2) ``signal_delay_s`` before the
limit; submitit calls ``CellJob.checkpoint``, which sends SIGTERM to the child's process group.
The trainer's handler (``training.preemption``) finishes the step, writes a checkpoint and exits
75; then ``checkpoint`` returns the same job for submitit to requeue, and the requeued job resumes
the cell from that checkpoint (``run_cell`` always resumes). The child runs in a session of its
own and ignores submitit's signal, so the signal reaches it only as that SIGTERM; it gets SIGTERM
too if the job process dies first (Linux ``PR_SET_PDEATHSIG``). A SIGTERM from SLURM itself (a
preemption) also stops the child after a checkpoint: the cell is recorded ``stopped``, SLURM
requeues it where the partition requeues preempted jobs, and rerunning the sweep resubmits it.

Anything else that ends the child without a ``cell.json`` verdict (killed for memory, a crash) is
recorded as a failed cell with the log's last line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from diffdrl.atomic import atomic_write_text
from diffdrl.harness.sweep import Cell, Sweep, read_cell, run_cell, write_cell
from diffdrl.training.preemption import PREEMPTED_EXIT

JOB_FILE, SUBMITTED_FILE, LOG_FILE, SPEC_FILE = "job.json", "submitted.json", "cell.log", "cell_spec.json"
ACTIVE = ("pending", "running", "requeued")  # a job that is queued or on a node


def log_dir(out: str | Path, cell: Cell) -> Path:
    """``SWEEP/slurm/<dataset>/<method>/seed<k>/``: the cell's job files and log."""
    return Path(out) / "slurm" / cell.dataset / cell.method / f"seed{cell.seed}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_job(directory: str | Path) -> dict | None:
    """The job's own record (``job.json``) if it has started, else None."""
    return _read_json(Path(directory) / JOB_FILE)


def read_submitted(directory: str | Path) -> dict | None:
    """What the last submission recorded (``submitted.json``: job id, executor, time), or None."""
    return _read_json(Path(directory) / SUBMITTED_FILE)


def write_submitted(directory: str | Path, record: dict) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(directory) / SUBMITTED_FILE, json.dumps(record, indent=2) + "\n")


def _update_job(directory: Path, **changes) -> dict:
    record = {**(read_job(directory) or {}), **changes}
    atomic_write_text(directory / JOB_FILE, json.dumps(record, indent=2) + "\n")
    return record


def last_line(path: str | Path) -> str:
    """The last non-empty line of a log (its error, usually), or a note that there is none."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines()]
    except FileNotFoundError:
        return f"no log at {path}"
    lines = [line for line in lines if line]
    return lines[-1] if lines else f"empty log {path}"


def _child_setup(ignored: int):
    """In the child, before exec: ignore submitit's signal; SIGTERM when the job process dies."""

    def setup() -> None:
        signal.signal(ignored, signal.SIG_IGN)
        if sys.platform.startswith("linux"):
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def cell_command(spec: str | Path, gpus: int) -> list[str]:
    """The child's command: the cell module, under ``torchrun`` with one process per GPU for
    several (``--standalone``: one node, a free rendezvous port; SIGTERM is passed on to every
    rank). ``train.batch_size`` stays the global batch, split over the processes."""
    module = ["-m", "diffdrl.harness.cell_job", str(spec)]
    if gpus <= 1:
        return [sys.executable, "-u", *module]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
    return [*launch, *module]


class CellJob:
    """The callable submitit runs for one cell (submitit's Checkpointable protocol: ``checkpoint``
    returns what to requeue). Returns the cell's ``cell.json`` record."""

    def __init__(self, sweep: dict, cell: Cell, out: str | Path, gpus: int = 1):
        self.sweep, self.cell, self.out, self.gpus = sweep, cell, str(Path(out).absolute()), gpus
        self._child: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_child": None}  # a process is not part of what is requeued

    @property
    def logs(self) -> Path:
        return log_dir(self.out, self.cell)

    def __call__(self) -> dict:
        import submitit

        env = submitit.JobEnvironment()
        directory = self.cell.directory(self.out)
        done = read_cell(directory)
        if done is not None and done["status"] == "done":  # finished before a late requeue
            _update_job(self.logs, state="done", job_id=env.job_id)
            return done
        self.logs.mkdir(parents=True, exist_ok=True)
        previous = read_job(self.logs) or {}
        _update_job(
            self.logs,
            state="running",
            job_id=env.job_id,
            attempt=previous.get("attempt", 0) + 1,
            requeues=previous.get("requeues", 0),
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.time(),
            submitit_log=str(env.paths.stdout),
        )
        spec = self.logs / SPEC_FILE
        spec.write_text(json.dumps({"sweep": self.sweep, "cell": vars(self.cell), "out": self.out}, indent=2))
        with open(self.logs / LOG_FILE, "a") as log:
            log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} job {env.job_id} on {socket.gethostname()}\n")
            log.flush()
            launched = time.time()
            self._child = subprocess.Popen(
                cell_command(spec, self.gpus),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own: SIGTERM reaches every rank
                preexec_fn=_child_setup(env._usr_sig()),
            )
            code = self._child.wait()
        self._child = None
        return self._verdict(code, launched)

    def _verdict(self, code: int, launched: float) -> dict:
        """The cell's record after the child exited with ``code``; its own verdict when it wrote
        one in this attempt, else a failure with the log's last line."""
        directory = self.cell.directory(self.out)
        record = read_cell(directory)
        fresh = record is not None and (record.get("started") or 0) >= launched
        if fresh and record["status"] in ("done", "failed", "stopped"):
            state = record["status"]
        else:  # ended without a verdict: killed, crashed, or lost before writing one
            why = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            record = {
                **(record or Sweep(**self.sweep).spec(self.cell)),  # its settings, for reruns
                "status": "failed",
                "error": f"cell process ended ({why}): {last_line(self.logs / LOG_FILE)}",
                "finished": time.time(),
            }
            directory.mkdir(parents=True, exist_ok=True)
            write_cell(directory, record)
            state = "failed"
        _update_job(self.logs, state=state, exit_code=code, finished=time.time())
        return record

    def checkpoint(self):
        """Called by submitit on its pre-timeout signal: stop the child after a checkpoint (it
        exits 75), then hand back this same job to requeue; it resumes from that checkpoint."""
        from submitit.helpers import DelayedSubmission

        child = self._child
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
                # wait without reaping: Popen.wait in __call__ may hold its lock under this handler
                os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            except (ProcessLookupError, ChildProcessError):
                pass  # already gone
        previous = read_job(self.logs) or {}
        _update_job(self.logs, state="requeued", requeues=previous.get("requeues", 0) + 1)
        return DelayedSubmission(self)


def main(argv: list[str] | None = None) -> int:
    """The child: run the cell of ``SPEC`` (``cell_spec.json``). Exit 0 done, 1 failed (recorded
    in ``cell.json``), 75 stopped by a signal after a checkpoint. Under several processes, rank 0
    runs the cell (training, evaluation, ``cell.json``) and the others train alongside it."""
    from diffdrl.training.config import load_config
    from diffdrl.training.preemption import TrainingPreempted
    from diffdrl.training.trainer import train

    (spec_path,) = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(spec_path).read_text())
    sweep, cell, out = Sweep(**spec["sweep"]), Cell(**spec["cell"]), spec["out"]
    rank = int(os.environ.get("RANK", "0"))
    try:
        if rank == 0:
            record = run_cell(sweep, cell, out)
            print(f"{cell.name}: {record['status']}" + (f": {record['error']}" if record["error"] else ""))
            return 0 if record["status"] == "done" else 1
        record = sweep.spec(cell)
        train(
            load_config(record["preset"], record["overrides"]),
            cell.directory(out),
            resume=True,
            progress=False,
        )
        return 0
    except TrainingPreempted as stop:
        print(f"{cell.name}: {stop}", flush=True)
        return PREEMPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
