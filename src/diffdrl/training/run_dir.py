"""A run directory's life while a process trains it: its lock, the leftovers of killed writers,
its logs cut back to the step it continues from, and removal when a new run fails before its first
checkpoint.

``writing(run_dir)`` is the one scope in which a process writes a run: it takes ``RUN/train.lock``
(``run_lock``) on entry and releases it on every exit path, so a process that builds trainers and
drops them (``benchmarks/cpu_budget.py``) never locks itself out; ``start`` then writes the config
and cuts the logs back to the step training continues from.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from diffdrl.atomic import atomic_write_text, remove_dead_temporaries
from diffdrl.training.checkpoint import latest_checkpoint, remove_leftovers
from diffdrl.training.preemption import TrainingPreempted
from diffdrl.training.run_lock import RunLock

logger = logging.getLogger(__name__)
LOGS = ("train_log.jsonl", "metrics.jsonl")


def _row_step(line: str) -> int | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop log rows written after ``step`` (they belong to the run's abandoned future), and a
    line cut short by a kill in the middle of an append."""
    if path.exists():
        steps = [(r, _row_step(r)) for r in path.read_text(errors="replace").splitlines()]
        atomic_write_text(path, "".join(r + "\n" for r, s in steps if s is not None and s <= step))


def append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def note(message: str, progress: bool) -> None:
    """Log ``message``, and show it when progress is on."""
    logger.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)


def clean_leftovers(run_dir: Path, progress: bool) -> None:
    """Remove what killed writers left behind: temporary checkpoint folders, half-written files."""
    removed = remove_leftovers(run_dir) + remove_dead_temporaries(run_dir)
    if removed:
        names = ", ".join(p.name for p in removed)
        note(f"{run_dir}: removed {len(removed)} leftover(s) of interrupted writes: {names}", progress)


def start(run_dir: Path, step: int, config_text: str) -> None:
    """As the run's writer, before the first step: write ``config.yaml`` and cut the logs back to
    ``step``, the step training continues from."""
    atomic_write_text(run_dir / "config.yaml", config_text)
    for log in LOGS:
        truncate_jsonl(run_dir / log, step)


@contextmanager
def writing(run_dir: Path, progress: bool = False) -> Iterator[None]:
    """Write ``run_dir`` as its single writer for the block.

    On entry: take the lock (``RunBusyError`` if another trainer holds it) and remove leftovers.
    On exit, always: release the lock; and when the block raised (``TrainingPreempted`` aside) in a
    directory this call created, remove the directory again if it holds no checkpoint (nothing of
    value: a config and partial logs).
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    lock = RunLock(run_dir).acquire()
    try:
        clean_leftovers(run_dir, progress)
        yield
    except TrainingPreempted:
        raise
    except BaseException:
        if created and latest_checkpoint(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()
