"""Typed run configuration: dataclasses with defaults written once, YAML presets that override
them, and ``key.sub=value`` overrides from the command line. Unknown keys and wrong types are
errors (``ConfigError``), never silently corrected.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from diffdrl.metrics.presets import PRESETS
from diffdrl.models.encdiff import EncDiffConfig
from diffdrl.models.registry import MODELS


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key."""


MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
LR_SCALINGS = ("none", "linear", "sqrt")
DATA_ON_DEVICE = ("auto", "always", "never")
ModelConfig = functools.reduce(operator.or_, (config for config, _ in MODELS.values()))  # tagged by name
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DataConfig:
    """Which dataset to train on (a registry name) and at what resolution."""

    name: str = "synth-shapes3d"
    path: str | None = None
    resolution: int = 64

    def __post_init__(self):
        if self.resolution < 8:
            raise ValueError(f"data.resolution must be >= 8, got {self.resolution}")


@dataclass
class TrainConfig:
    """Optimisation, schedule of side jobs, speed switches and reproducibility (defaults: released
    EncDiff).

    Speed (the trainer logs the resolved values once at the start and stores them in every
    checkpoint's ``state.json``):

    - ``fast_path`` (default on) matters only on CUDA, where it turns on bf16 autocast (through
      ``mixed_precision="auto"``), channels_last tensors, fused AdamW and TF32 matmuls/convolutions
      (a process-wide torch setting). On CPU it changes nothing, so CPU runs stay bit-identical.
      Turn it off to choose each switch yourself.
    - ``mixed_precision``: ``"auto"`` = bf16 on a CUDA device that supports it when ``fast_path`` is
      on, else ``"no"`` (the reason is logged). An explicit value is honoured or refused, never
      replaced: ``"bf16"`` runs torch's bf16 autocast on CPU too (slow on most CPUs, but what was
      asked); ``"bf16"`` on a GPU without bf16 and ``"fp16"`` off CUDA are errors. Autocast wraps the
      network calls only; the optimizer, EMA and losses stay float32. (YAML reads a bare ``no`` as
      false: write ``'no'``, on the command line ``train.mixed_precision="'no'"``.)
    - ``channels_last``: true forces NHWC tensors on any device (on CUDA the fast path already does).
    - ``compile``: ``torch.compile`` the model; always an explicit opt-in (compilation takes minutes).
    - ``lr_scaling``: for large batches, the learning rate actually used is
      ``lr * f(batch_size / reference_batch_size)`` with f = identity (``"linear"``, Goyal et al. 2017)
      or square root (``"sqrt"``); ``reference_batch_size`` is the batch ``lr`` was tuned for and must
      be given whenever scaling is on. ``"none"`` (default) uses ``lr`` as written.
    - ``data_on_device``: where training images come from. ``"auto"``: on CUDA, procedural datasets
      that can (synth-shapes3d) render batches on the GPU, and array-backed datasets are copied once
      to GPU memory as uint8 when they take at most a quarter of it (and half of what is free);
      otherwise, and always on CPU, a background thread prepares each batch ahead (pinned memory on
      CUDA). ``"always"`` renders or copies on the training device whatever its size (also on CPU:
      the whole dataset in RAM as one uint8 tensor); ``"never"`` keeps the background thread.
      Batches are the same images in every mode (to within GPU rounding for rendered ones).

    ``batch_size`` is the global batch: with P processes (``accelerate launch``), each takes
    ``batch_size / P`` images of the same global batch, so the run matches a single process's.
    """

    steps: int = 100_000
    batch_size: int = 128
    lr: float = 2.56e-4
    warmup_steps: int = 10_000
    weight_decay: float = 0.01
    grad_clip: float = 0.0  # 0 = off
    ema_decay: float = 0.9999
    seed: int = 0
    log_every: int = 50
    eval_every: int = 1000
    eval_batch_size: int = 256
    metrics: tuple[str, ...] = ()  # disentanglement metrics run during training (EMA weights)
    metrics_every: int = 0  # steps between metric runs; 0 = only at the end
    metrics_preset: str = "fast"
    time_budget_minutes: float = 0.0  # stop when training (side jobs excluded) has run this long; 0 = off
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    device: str = "auto"
    fast_path: bool = True
    mixed_precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    lr_scaling: str = "none"
    reference_batch_size: int = 0  # the batch ``lr`` was tuned for; required when lr_scaling is on
    data_on_device: str = "auto"

    def __post_init__(self):
        for key in (
            "steps",
            "batch_size",
            "log_every",
            "eval_every",
            "eval_batch_size",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("train.warmup_steps, train.weight_decay and train.grad_clip must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.time_budget_minutes < 0:
            raise ValueError(f"train.time_budget_minutes must be >= 0, got {self.time_budget_minutes}")
        if self.metrics_every < 0:
            raise ValueError(f"train.metrics_every must be >= 0, got {self.metrics_every}")
        if self.metrics_preset not in PRESETS:
            raise ValueError(
                f"train.metrics_preset must be one of {tuple(PRESETS)}, got {self.metrics_preset!r}"
            )
        if self.device not in DEVICES:
            raise ValueError(f"train.device must be one of {DEVICES}, got {self.device!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"train.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"train.lr_scaling must be one of {LR_SCALINGS}, got {self.lr_scaling!r}")
        if self.reference_batch_size < 0:
            raise ValueError(f"train.reference_batch_size must be >= 0, got {self.reference_batch_size}")
        if self.lr_scaling != "none" and self.reference_batch_size == 0:
            raise ValueError(
                f"train.lr_scaling={self.lr_scaling!r} needs train.reference_batch_size, the batch size "
                "train.lr was tuned for"
            )
        if self.data_on_device not in DATA_ON_DEVICE:
            raise ValueError(
                f"train.data_on_device must be one of {DATA_ON_DEVICE}, got {self.data_on_device!r}"
            )

    @property
    def effective_lr(self) -> float:
        """The learning rate the optimiser uses: ``lr`` scaled by ``lr_scaling`` (see class doc)."""
        if self.lr_scaling == "none":
            return self.lr
        ratio = self.batch_size / self.reference_batch_size
        return self.lr * (ratio if self.lr_scaling == "linear" else ratio**0.5)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=EncDiffConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, with type checks


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is ModelConfig:  # the model section: whichever model ``name`` says
        return _convert_tagged(value, tuple(config for config, _ in MODELS.values()), key)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a library bug, not user error


def _convert_tagged(value: Any, classes: tuple[type, ...], key: str) -> Any:
    by_name = {cls().name: cls for cls in classes}
    name = value.get("name", next(iter(by_name))) if isinstance(value, dict) else None
    if name not in by_name:
        raise ConfigError(f"{key}.name must be one of {tuple(by_name)}, got {name!r}")
    return from_dict(by_name[name], value, key)


def from_dict(cls: type, mapping: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) mapping; missing keys take the defaults."""
    where = prefix or "config"
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else str(k) for k in unknown)
        raise ConfigError(f"unknown config key {dotted} (valid in {where}: {', '.join(names)})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in mapping.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:
        # sub-configs name their own keys ("denoiser.heads"); give the full path ("model.denoiser.heads")
        msg, local = str(err), prefix.rsplit(".", 1)[-1]
        if prefix != local and msg.startswith(local + "."):
            msg = prefix[: -len(local)] + msg
        raise ConfigError(msg) from None


def to_dict(config: Any) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(config))


# ---------------------------------------------------------------------------------------------
# presets, files and command-line overrides


def preset_names() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("diffdrl.configs").iterdir() if p.name.endswith(".yaml")
    )


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text YAML file (byte {err.start} is not UTF-8)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data or {}


def _merge(base: dict, top: dict) -> dict:
    """``top`` laid over ``base``, section by section; a ``model`` section naming another model
    replaces the base's instead of merging into it (their keys differ)."""
    merged = dict(base)
    for key, value in top.items():
        both_sections = isinstance(value, dict) and isinstance(base.get(key), dict)
        if both_sections and key == "model":
            base_name = base[key].get("name", next(iter(MODELS)))
            both_sections = value.get("name", base_name) == base_name
        merged[key] = _merge(base[key], value) if both_sections else value
    return merged


def preset_mapping(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict:
    """The raw mapping of a preset name (``tiny-cpu``) or a YAML file path. A top-level
    ``base: <preset or path>`` key makes it a variant: only what differs is written."""
    if name_or_path in _seen:
        raise ConfigError(
            f"presets inherit from each other in a cycle: {' -> '.join((*_seen, name_or_path))}"
        )
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        mapping = read_yaml(Path(name_or_path))
    elif name_or_path in preset_names():
        text = resources.files("diffdrl.configs").joinpath(f"{name_or_path}.yaml").read_text()
        mapping = yaml.safe_load(text) or {}
    else:
        raise ConfigError(f"unknown preset {name_or_path!r} (presets: {', '.join(preset_names())})")
    base = mapping.pop("base", None)
    if base is None:
        return mapping
    if not isinstance(base, str):
        raise ConfigError(f"{name_or_path}: base must be a preset name or YAML path, got {base!r}")
    return _merge(preset_mapping(base, (*_seen, name_or_path)), mapping)


def apply_overrides(mapping: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` pairs (values parsed as YAML scalars/lists) into a copy of ``mapping``."""
    result = yaml.safe_load(yaml.safe_dump(mapping))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
        node = result
        *parents, leaf = key.split(".")
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
            node = child
        node[leaf] = value
    return result


def load_config(name_or_path: str, overrides: list[str] = ()) -> Config:
    return from_dict(Config, apply_overrides(preset_mapping(name_or_path), list(overrides)))


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists: ``channels: [32, 64, 64, 64]``."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_config(config: Config) -> str:
    return yaml.dump(to_dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
