"""Run-directory checkpoints: safetensors for tensors, JSON for everything else, written atomically.

Layout: ``RUN/checkpoints/step_<k>/{model,ema,optimizer}.safetensors + state.json``. A checkpoint
is assembled in a hidden temporary directory (``.tmp-step_<k>-<pid>``), flushed to disk and
renamed into place, so a kill at any moment leaves either the previous checkpoints or the new
one, never a half-written one; a failed write (disk full, no permission) removes its temporary
directory and leaves the previous checkpoints as they were. ``state.json`` records the size and
sha256 of every tensor file, so a checkpoint damaged later (a truncated copy, a bad disk) is
reported by name on loading instead of being half-read. Pruned checkpoints are renamed to
``.trash-*`` before deletion, so a kill mid-prune never leaves a partial ``step_<k>``.

Only the run's single writer (the trainer holding ``run_lock``) writes here, so whatever hidden
leftovers it finds at the start came from a killed writer and are removed (``remove_leftovers``).
Nothing here unpickles: optimizer state is flattened into tensors plus JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

TENSOR_FILES = ("model", "ema", "optimizer")
_STEP_DIR = re.compile(r"^step_(\d+)$")
_LEFTOVER = re.compile(r"^\.(tmp|old|trash)-step_(\d+)-(\d+)$")
PAUSE_ENV = "DIFFDRL_CHECKPOINT_PAUSE"  # fault-injection hook, see ``_stage``


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (disk full, permission, ...); the previous ones are intact."""


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1][1] if found else None


def _flat(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous, unshared CPU tensors
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def optimizer_to_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into flat tensors and a JSON-able remainder."""
    tensors, scalars = {}, {}
    for idx, slots in state_dict["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _stage(step: int, stage: str) -> None:
    """Fault-injection hook for tests and ``benchmarks/kill_resume.py``: with the environment
    variable ``DIFFDRL_CHECKPOINT_PAUSE=<seconds>`` set, announce each stage of a checkpoint write
    on stderr and pause there, so that a kill can be aimed inside the write. Unset: nothing."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        print(f"diffdrl-checkpoint-write step_{step} {stage}", file=sys.stderr, flush=True)
        time.sleep(float(pause))


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Remove a directory by first renaming it to a hidden ``.trash-`` name (atomic), so a kill
    midway leaves a leftover to clean rather than a damaged checkpoint."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(
    run_dir: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict, keep: int
) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep``.

    Any ``OSError`` on the way (ENOSPC, EACCES, ...) removes the partial write and is raised as a
    one-line ``CheckpointWriteError``; the checkpoints written before are untouched."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step}"
    tmp = root / f".tmp-step_{step}-{os.getpid()}"
    previous = latest_checkpoint(run_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files = {}
        for name, sd in tensors.items():
            _stage(step, f"{name}.safetensors")
            data = save_bytes(_flat(sd))
            _write_synced(tmp / f"{name}.safetensors", data)
            files[f"{name}.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        _stage(step, "state.json")
        _write_synced(tmp / "state.json", json.dumps({**state, "files": files}, indent=2).encode())
        _sync_dir(tmp)
        _stage(step, "rename")
        if final.exists():  # re-saving a step (after a resume): the new one replaces it
            _discard(final)
        os.replace(tmp, final)
        _sync_dir(root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = f"[Errno {err.errno}] {err.strerror}" if err.strerror else str(err)
        kept = (
            f"{previous} is intact" if previous is not None and previous.is_dir() else "no earlier checkpoint"
        )
        raise CheckpointWriteError(f"could not write checkpoint {final}: {reason}; {kept}") from None
    for _, path in checkpoints(run_dir)[:-keep]:
        try:
            _discard(path)
        except OSError:  # an old checkpoint that cannot be pruned is only wasted space
            pass
    return final


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove what killed checkpoint writes left in ``RUN/checkpoints`` (temporary, set-aside and
    half-pruned directories, whatever process made them); the paths removed.

    Call only as the run's writer (holding its lock). A ``.old-step_<k>-<pid>`` whose ``step_<k>``
    is missing (a kill between the two renames of a re-save, in older versions) is put back."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        m = _LEFTOVER.match(path.name)
        if not m:
            continue
        if m.group(1) == "old" and not (root / f"step_{m.group(2)}").exists():
            os.replace(path, root / f"step_{m.group(2)}")
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _check_file(file: Path, expected: dict | None) -> None:
    if expected is None:
        return
    size = file.stat().st_size
    if size != expected["bytes"]:
        raise ValueError(f"checkpoint file {file} is corrupt: {size} bytes, {expected['bytes']} were written")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    if digest != expected["sha256"]:
        raise ValueError(f"checkpoint file {file} is corrupt: its sha256 differs from the one written")


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """(tensors by file name, state.json) of one checkpoint directory, validated (sizes and sha256
    against ``state.json`` when it records them)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = json.loads((path / "state.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} is incomplete: state.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint {path}/state.json is corrupt: {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path}/state.json is corrupt: not a JSON object")
    files = state.get("files") or {}
    tensors = {}
    for name in TENSOR_FILES:
        file = path / f"{name}.safetensors"
        if not file.exists():
            if f"{name}.safetensors" in files:
                raise ValueError(f"checkpoint {path} is incomplete: {file.name} is missing")
            continue
        try:
            _check_file(file, files.get(file.name))
            tensors[name] = load_bytes(file.read_bytes())
        except (SafetensorError, OSError) as err:
            raise ValueError(f"checkpoint file {file} is corrupt: {err}") from None
    if "model" not in tensors:
        raise ValueError(f"checkpoint {path} is incomplete: model.safetensors is missing")
    return tensors, state


def newest_valid_checkpoint(run_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that loads, and (path, reason) of each newer one that does not."""
    broken = []
    for _, path in reversed(checkpoints(run_dir)):
        try:
            load_checkpoint(path)
        except (ValueError, OSError) as err:
            broken.append((path, str(err)))
            continue
        return path, broken
    return None, broken
