"""Train and evaluate a grid of (dataset, method, seed) cells, one ordinary run directory each,
one after another in this process; resumable, and a failing cell never stops the others.

A sweep directory::

    OUT/sweep.json                            the grid last asked for (``table`` lists what is missing)
    OUT/<dataset>/<method>/seed<k>/           a run directory (config.yaml, checkpoints/, logs)
    OUT/<dataset>/<method>/seed<k>/cell.json  the cell's settings, status, steps, times and scores

A method names a preset: ``encdiff`` is the base preset itself (``tiny-cpu``), any other method
``m`` is the preset ``<preset>-<m>`` (``tiny-cpu-dyga``). A cell's config is that preset with the
``--set`` overrides (``key=value`` for every method, ``method:key=value`` for one: models differ
in their keys), then ``data.name=<dataset>`` (and ``data.path``), ``train.seed=<k>`` and, under a
time budget, ``train.time_budget_minutes=<m>`` with a step count never reached, so
the budget alone ends training (``TrainConfig.time_budget_minutes``: training time, side jobs
excluded). After training, the cell's EMA model is evaluated with ``api.evaluate_run`` on its own
dataset; the metric sampling seed is the cell's seed, so the spread over seeds covers training and
evaluation sampling alike.

DisDiff (``disdiff``) starts from a pre-trained unconditional denoiser that all its cells share:
``--set disdiff:model.pretrained.path=RUN``, a run of ``<preset>-ddpm`` trained beforehand (its
training time is the run's own, reported beside the cells'); without it the sweep is an error
before anything trains.

Rerunning the same sweep skips done cells, resumes unfinished ones from their latest checkpoint
(``Trainer(resume=True)``) and retries failed ones. A cell directory that holds a cell of other
settings (preset, overrides, budget, metrics) is an error before anything trains: its checkpoints
belong to another experiment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diffdrl.atomic import atomic_write_text
from diffdrl.configs import DEFAULT_RUN_PRESET
from diffdrl.training.checkpoint import latest_checkpoint
from diffdrl.training.config import load_config, preset_names
from diffdrl.training.preemption import TrainingPreempted
from diffdrl.training.runs import evaluate_run, load_run
from diffdrl.training.trainer import train

ENCDIFF = "encdiff"  # the method that is the base preset itself
UNREACHABLE_STEPS = 10**9  # train.steps under a time budget: the budget ends training
GRID_KEYS = ("data.name", "data.path", "train.seed")  # set per cell, never by --set
BUDGET_KEYS = ("train.steps", "train.time_budget_minutes")  # set by the budget when there is one
SPEC_KEYS = (
    "method",
    "dataset",
    "seed",
    "preset",
    "overrides",
    "budget_minutes",
    "metrics",
    "metrics_preset",
)


def _scope(override: str) -> tuple[str | None, str]:
    """``"dyga:key=value"`` -> ``("dyga", "key=value")``; an unscoped override -> ``(None, override)``."""
    key, _, _ = override.partition("=")  # a value may hold a colon
    scope, colon, rest = override.partition(":")
    return (scope, rest) if colon and ":" in key else (None, override)


def method_preset(method: str, preset: str) -> str:
    """The preset a method trains with: ``preset`` for encdiff, else ``<preset>-<method>``."""
    return preset if method == ENCDIFF else f"{preset}-{method}"


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    dataset: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}/seed{self.seed}"

    def directory(self, out: str | Path) -> Path:
        return Path(out) / self.dataset / self.method / f"seed{self.seed}"


def _check_names(values: Sequence, what: str) -> tuple:
    values = tuple(values)
    if not values:
        raise ValueError(f"{what} must name at least one, got none")
    if duplicates := sorted({str(v) for v in values if values.count(v) > 1}):
        raise ValueError(f"{what} lists {', '.join(duplicates)} more than once")
    return values


@dataclass
class Sweep:
    """The grid (methods x datasets x seeds) and the settings all its cells share.

    Args:
        methods: ``encdiff`` or suffixes of presets (``dyga`` -> ``<preset>-dyga``).
        datasets: dataset registry names (``diffdrl.data.DATASETS``).
        seeds: training seeds (``train.seed``), also the metrics' sampling seeds.
        preset: the base preset name.
        budget_minutes: training time per cell; ``None`` trains the presets' ``train.steps``.
        metrics: metric names (``diffdrl.metrics.METRICS``); ``None``: all that apply.
        metrics_preset: ``"canonical"`` (dlib's protocol) or ``"fast"``.
        overrides: ``key.sub=value`` for every cell, or ``method:key.sub=value`` for one method's
            (models differ in their keys), before the cell's own.
        data_paths: dataset name -> ``data.path``, for datasets read from disk.
    """

    methods: Sequence[str]
    datasets: Sequence[str]
    seeds: Sequence[int]
    preset: str = DEFAULT_RUN_PRESET
    budget_minutes: float | None = None
    metrics: Sequence[str] | None = None
    metrics_preset: str = "canonical"
    overrides: Sequence[str] = ()
    data_paths: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        from diffdrl.data import DATASETS
        from diffdrl.metrics import METRICS, PRESETS

        self.methods = _check_names(self.methods, "methods")
        self.datasets = _check_names(self.datasets, "datasets")
        self.seeds = _check_names(self.seeds, "seeds")
        if bad := [m for m in self.methods if not m or "/" in m or m.startswith(".")]:
            raise ValueError(f"methods must be plain names, got {bad}")
        if unknown := [d for d in self.datasets if d not in DATASETS]:
            raise ValueError(f"unknown datasets {unknown} (datasets: {', '.join(sorted(DATASETS))})")
        if bad := [s for s in self.seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]:
            raise ValueError(f"seeds must be integers >= 0, got {bad}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise ValueError(
                f"budget_minutes must be > 0 (or None for the presets' steps), got {self.budget_minutes}"
            )
        if self.metrics is not None:
            self.metrics = _check_names(self.metrics, "metrics")
            if unknown := [m for m in self.metrics if m not in METRICS]:
                raise ValueError(f"unknown metrics {unknown} (metrics: {', '.join(METRICS)})")
        if self.metrics_preset not in PRESETS:
            raise ValueError(f"metrics_preset must be one of {tuple(PRESETS)}, got {self.metrics_preset!r}")
        self.overrides = tuple(self.overrides)
        scoped = [_scope(o) for o in self.overrides]
        if unknown := sorted({m for m, _ in scoped if m is not None and m not in self.methods}):
            raise ValueError(
                f"overrides scoped to methods not in the sweep: {unknown} (methods: {self.methods})"
            )
        owned = GRID_KEYS + (BUDGET_KEYS if self.budget_minutes is not None else ())
        if clash := [
            o for o, (_, item) in zip(self.overrides, scoped, strict=True) if item.partition("=")[0] in owned
        ]:
            raise ValueError(
                f"overrides {clash} set what the sweep sets per cell ({', '.join(owned)}); "
                "use --datasets, --seeds, --data-path or --budget-minutes"
            )
        self.data_paths = dict(self.data_paths)
        if unknown := sorted(set(self.data_paths) - set(self.datasets)):
            raise ValueError(f"data paths given for datasets not in the sweep: {unknown}")

    def cells(self) -> list[Cell]:
        """Every cell, dataset by dataset, method by method, seed by seed."""
        return [Cell(d, m, s) for d in self.datasets for m in self.methods for s in self.seeds]

    def missing_presets(self) -> dict[str, str]:
        """method -> preset name, for the methods whose preset does not exist."""
        names = set(preset_names())
        wanted = {m: method_preset(m, self.preset) for m in self.methods}
        return {m: p for m, p in wanted.items() if p not in names and not Path(p).is_file()}

    def method_overrides(self, method: str) -> list[str]:
        """The ``--set`` overrides that apply to ``method``, scope removed, in the order given."""
        return [item for scope, item in map(_scope, self.overrides) if scope in (None, method)]

    def cell_overrides(self, cell: Cell) -> list[str]:
        """The shared overrides, then the cell's: what ``diffdrl train --config <preset>`` would take."""
        own = [f"data.name={cell.dataset}"]
        if cell.dataset in self.data_paths:
            own.append(f"data.path={self.data_paths[cell.dataset]}")
        own.append(f"train.seed={cell.seed}")
        if self.budget_minutes is not None:
            own += [f"train.time_budget_minutes={self.budget_minutes}", f"train.steps={UNREACHABLE_STEPS}"]
        return [*self.method_overrides(cell.method), *own]

    def spec(self, cell: Cell) -> dict:
        """What makes a cell the cell it is (``cell.json`` keys ``SPEC_KEYS``)."""
        return {
            "method": cell.method,
            "dataset": cell.dataset,
            "seed": cell.seed,
            "preset": method_preset(cell.method, self.preset),
            "overrides": self.cell_overrides(cell),
            "set_overrides": self.method_overrides(cell.method),
            "budget_minutes": self.budget_minutes,
            "metrics": None if self.metrics is None else list(self.metrics),
            "metrics_preset": self.metrics_preset,
        }

    def to_dict(self) -> dict:
        return {
            "methods": list(self.methods),
            "datasets": list(self.datasets),
            "seeds": list(self.seeds),
            "preset": self.preset,
            "budget_minutes": self.budget_minutes,
            "metrics": None if self.metrics is None else list(self.metrics),
            "metrics_preset": self.metrics_preset,
            "overrides": list(self.overrides),
            "data_paths": self.data_paths,
        }


def read_cell(directory: str | Path) -> dict | None:
    """A cell directory's ``cell.json``, or None when it has none yet."""
    path = Path(directory) / "cell.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is corrupt ({err}); remove it to rerun the cell") from None


def write_cell(directory: Path, record: dict) -> None:
    """Write a cell's ``cell.json`` atomically."""
    atomic_write_text(directory / "cell.json", json.dumps(record, indent=2) + "\n")


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def prepare(sweep: Sweep, out: str | Path) -> Path:
    """Check ``out`` before anything runs (``check_before_training``), then create it and write
    the grid to ``sweep.json``; whichever executor runs the cells."""
    out = Path(out)
    check_before_training(sweep, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(sweep.to_dict(), indent=2) + "\n")
    return out


def check_before_training(sweep: Sweep, out: Path) -> None:
    """``out`` is new, empty or a sweep directory, every preset exists and no cell directory holds
    a cell of other settings."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a sweep directory")
    if out.is_dir() and not (out / "sweep.json").is_file() and any(out.iterdir()):
        raise ValueError(
            f"{out} is not a sweep directory (no sweep.json; made by another command?): "
            "choose a new or empty --out"
        )
    if missing := sweep.missing_presets():
        listed = ", ".join(f"{p} (method {m})" for m, p in missing.items())
        raise ValueError(f"missing presets: {listed}; presets: {', '.join(preset_names())}")
    for method in sweep.methods:
        check_pretrained(sweep, method)
    for cell in sweep.cells():
        record = read_cell(cell.directory(out))
        if record is None:
            continue
        spec = sweep.spec(cell)
        if differ := [_difference(k, record.get(k), spec[k]) for k in SPEC_KEYS if record.get(k) != spec[k]]:
            raise ValueError(
                f"{cell.directory(out)} holds a cell of other settings ({'; '.join(differ)}); "
                "remove it or choose another --out"
            )


def check_pretrained(sweep: Sweep, method: str) -> None:
    """A method that starts from a pre-trained run (DisDiff's ``model.pretrained.path``) must be
    given it before anything trains: every seed shares that one run. Other config errors are left
    to the cells, which record them."""
    try:
        config = load_config(method_preset(method, sweep.preset), sweep.method_overrides(method))
    except ValueError:
        return
    pretrained = getattr(config.model, "pretrained", None)
    if pretrained is not None and not pretrained.path:
        raise ValueError(
            f"method {method} starts from a pre-trained denoiser: add --set "
            f"{method}:model.pretrained.path=RUN (every seed shares it; train it with "
            f"`diffdrl train --config {sweep.preset}-ddpm --out RUN`)"
        )


def _difference(key: str, there, asked) -> str:
    if key == "overrides" and isinstance(there, list):
        only_there, only_asked = [o for o in there if o not in asked], [o for o in asked if o not in there]
        return f"overrides: only the cell's {only_there}, only this sweep's {only_asked}"
    return f"{key}: it has {there!r}, this sweep asks {asked!r}"


def _train_seconds(directory: Path) -> float | None:
    checkpoint = latest_checkpoint(directory)
    if checkpoint is None:
        return None
    return json.loads((checkpoint / "state.json").read_text()).get("train_seconds")


def run_cell(sweep: Sweep, cell: Cell, out: str | Path) -> dict:
    """Train (or resume) one cell and evaluate its EMA model; its ``cell.json`` record.

    Any exception (a config error, a non-finite loss, a failing metric) is recorded as
    ``status: failed`` with its one-line message rather than raised. A stop signal
    (``TrainingPreempted``: the trainer checkpointed) is recorded as ``status: stopped`` and raised.
    """
    import torch

    directory = cell.directory(out)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        **sweep.spec(cell),
        "status": "running",
        "step": None,
        "train_seconds": None,
        "scores": {},
        "error": None,
        "started": time.time(),
        "finished": None,
        "train_wall_seconds": None,
        "eval_wall_seconds": None,
    }
    write_cell(directory, record)
    try:
        start = time.perf_counter()
        config = load_config(record["preset"], record["overrides"])
        result = train(config, directory, resume=True, progress=False)
        record["step"], record["train_seconds"] = result.step, _train_seconds(directory)
        record["train_wall_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        use_cuda = config.train.device != "cpu" and torch.cuda.is_available()
        run = load_run(directory, device="cuda" if use_cuda else "cpu")
        metrics = None if sweep.metrics is None else list(sweep.metrics)
        record["scores"] = evaluate_run(
            run, metrics, preset=sweep.metrics_preset, seed=cell.seed, progress=False
        )
        record["eval_wall_seconds"] = time.perf_counter() - start
        record["status"] = "done"
    except TrainingPreempted as stop:  # checkpointed: "stopped", and resumed when run again
        record.update(status="stopped", step=stop.step, finished=time.time())
        write_cell(directory, record)
        raise
    except Exception as err:  # recorded, printed, and the sweep goes on
        record["status"], record["error"] = "failed", _one_line(err)
    record["finished"] = time.time()
    write_cell(directory, record)
    return record


def _describe(record: dict) -> str:
    if record["status"] != "done":
        return f"FAILED: {record['error']}"
    from diffdrl.harness.table import select_keys

    seconds = record["train_seconds"]
    trained = f"step {record['step']}" + (f", {seconds:.1f} s training" if seconds is not None else "")
    keys = select_keys([record])[:3]
    return f"done ({trained}): " + ", ".join(f"{k} {record['scores'][k]:.3f}" for k in keys)


def run_sweep(sweep: Sweep, out: str | Path, echo: Callable[[str], None] = print) -> list[dict]:
    """Run every cell of ``sweep`` under ``out`` in turn; the cells' ``cell.json`` records.

    Raises ``ValueError`` before anything trains when a preset is missing or a cell directory
    holds another experiment. Done cells are skipped, unfinished ones resumed, failed ones retried;
    failures are recorded (``status: failed``) and the sweep goes on. ``echo`` gets one line as
    each cell starts and one as it ends.
    """
    out = prepare(sweep, out)
    cells, records = sweep.cells(), []
    for i, cell in enumerate(cells, 1):
        prefix = f"[{i}/{len(cells)}] {cell.name}"
        record = read_cell(cell.directory(out))
        if record is not None and record["status"] == "done":
            echo(f"{prefix}: done already, skipped")
        else:
            resuming = latest_checkpoint(cell.directory(out)) is not None
            budget = f"{sweep.budget_minutes:g} min" if sweep.budget_minutes is not None else "preset steps"
            action = (
                "resuming"
                if resuming
                else ("retrying" if record and record["status"] == "failed" else "training")
            )
            echo(f"{prefix}: {action} ({method_preset(cell.method, sweep.preset)}, {budget})")
            record = run_cell(sweep, cell, out)
            echo(f"{prefix}: {_describe(record)}")
        records.append(record)
    return records
