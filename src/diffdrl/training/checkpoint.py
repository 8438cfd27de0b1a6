"""Run-directory checkpoints: safetensors for tensors, JSON for everything else, written atomically.

Layout: ``RUN/checkpoints/step_<k>/{model,ema,optimizer}.safetensors + state.json``. A checkpoint
is assembled in a hidden temporary directory and renamed into place, so a kill at any moment
leaves either the previous checkpoints or the new one, never a half-written one. Nothing here
unpickles: optimizer state is flattened into tensors plus JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

TENSOR_FILES = ("model", "ema", "optimizer")
_STEP_DIR = re.compile(r"^step_(\d+)$")


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


def save_checkpoint(
    run_dir: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict, keep: int
) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".tmp-step_{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, sd in tensors.items():
        save_file(_flat(sd), str(tmp / f"{name}.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    if final.exists():  # re-saving a step (after a resume): move the old one aside first
        old = root / f".old-step_{step}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    for _, path in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path)
    return final


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """(tensors by file name, state.json) of one checkpoint directory, validated."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = json.loads((path / "state.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} is incomplete: state.json is missing") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint {path}/state.json is corrupt: {err}") from None
    tensors = {}
    for name in TENSOR_FILES:
        file = path / f"{name}.safetensors"
        if not file.exists():
            continue
        try:
            tensors[name] = load_file(str(file))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"checkpoint file {file} is corrupt: {err}") from None
    if "model" not in tensors:
        raise ValueError(f"checkpoint {path} is incomplete: model.safetensors is missing")
    return tensors, state
