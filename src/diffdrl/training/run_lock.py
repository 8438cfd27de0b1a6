"""One run, one writer: a lock file in the run directory held while a process trains it.

``RUN/train.lock`` holds the writer's pid, host, process start time and command. It is created
atomically complete (written to a private file, then hard-linked into place, which fails if a
lock exists), so a second ``diffdrl train`` on the same run fails at once naming the holder. A
lock whose process is gone (same host, the pid is not running, or is running but started at
another time, i.e. a reused pid) is stale: it is replaced and a note says so. A lock from another
host cannot be checked from here and is reported with the command that removes it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import weakref
from pathlib import Path

logger = logging.getLogger(__name__)
LOCK_NAME = "train.lock"
_HELD: set[str] = set()  # lock paths held by this process (several Trainers may live in one process)


class RunBusyError(FileExistsError):
    """Another process is training this run directory."""


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` runs on this host and is the process that wrote the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    if _process_state(pid) in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    now = _process_start(pid)
    return started is None or now is None or now == started


def describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "an unknown time"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {when}"


class RunLock:
    """Exclusive right to write a run directory; ``acquire`` it, ``release`` it (also on garbage
    collection and at exit, so an exception cannot leave a live process's lock behind)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_start": _process_start(os.getpid()),
            "started": time.time(),
            "command": " ".join(sys.argv),
        }
        self._finalizer = None

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {"unreadable": True}
        return data if isinstance(data, dict) else {"unreadable": True}

    def _stale(self, holder: dict) -> bool:
        if holder.get("unreadable"):  # a lock is written complete before it appears: never ours
            return True
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return True
        if pid == os.getpid():
            return str(self.path) not in _HELD
        return not _alive(pid, holder.get("process_start"))

    def acquire(self) -> RunLock:
        """Take the lock, replacing a stale one (with a note); ``RunBusyError`` if it is held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}")
        private.write_text(json.dumps(self.record))
        try:
            for _ in range(2):
                try:
                    os.link(private, self.path)
                    break
                except FileExistsError:
                    holder = self._read()
                    if not holder:  # released between our attempt and the read
                        continue
                    if not self._stale(holder):
                        self._busy(holder)
                    note = (
                        f"{self.path.parent}: recovered the stale lock of {describe(holder)} "
                        "(that process is gone)"
                    )
                    logger.info(note)
                    print(f"diffdrl: note: {note}", file=sys.stderr)
                    self.path.unlink(missing_ok=True)
            else:
                self._busy(self._read())
        finally:
            private.unlink(missing_ok=True)
        _HELD.add(str(self.path))
        self._finalizer = weakref.finalize(self, _release, self.path, dict(self.record))
        return self

    def check(self) -> None:
        """``RunBusyError`` at once if a live trainer holds the lock (this process's own included);
        takes nothing (``acquire`` does)."""
        holder = self._read()
        if holder and not self._stale(holder):
            self._busy(holder)

    def _busy(self, holder: dict) -> None:
        if holder.get("host") not in (None, socket.gethostname()):
            raise RunBusyError(
                f"{self.path.parent} is being trained by {describe(holder)} (another host, so it cannot be "
                f"checked from here); if that process is gone, remove {self.path}"
            )
        raise RunBusyError(
            f"{self.path.parent} is being trained by {describe(holder)}; one run has one writer: wait for "
            "it, or stop it (it checkpoints on SIGTERM) and pass --resume"
        )

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def _release(path: Path, record: dict) -> None:
    """Remove the lock file if it is still ours."""
    _HELD.discard(str(path))
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if holder.get("pid") == record["pid"] and holder.get("started") == record["started"]:
        path.unlink(missing_ok=True)
