"""Atomic file writes: a reader (or a kill) never sees a half-written file.

Every write goes to a hidden temporary file beside the target, is flushed, and is renamed over the
target with ``os.replace`` (atomic on POSIX within one file system). On any error the temporary file
is removed and the previous file, if any, is left as it was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` unique to this process, for writing before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers that were killed (their pid is no
    longer running); the paths removed. A live writer's temporary file is left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        m = _TEMPORARY.match(path.name)
        if m and path.is_file() and not _pid_alive(int(m.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then rename it to ``path``. Missing folders
    are made first: an ``--out`` in a new folder must not fail after the work that fills it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))
