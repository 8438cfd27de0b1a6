"""Mean ± std over seeds of the cells of one or more sweeps, as Markdown, CSV and a bar chart.

Done cells are grouped by dataset, method, preset, time budget and shared ``--set`` overrides (a
group = one row); each score is summarised over the group's seeds as the mean and the *sample*
standard deviation (``ddof=1``; undefined, shown "—", for a single seed). Failed, unfinished and
missing cells (in a ``sweep.json`` grid without a ``cell.json``) are listed under the tables.

Which scores: patterns naming a metric (``mig``, ``dci``) or one of its fields
(``dci.disentanglement``) select every key of that metric under any protocol, so
``dci.disentanglement`` shows ``dci.disentanglement`` (canonical) and ``dci_fast.disentanglement``
(fast) as separate columns; a fast number is never averaged with, or shown as, a canonical one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffdrl.atomic import atomic_write, atomic_write_text

# The headline scores: FactorVAE score, DCI disentanglement / completeness / informativeness, MIG.
DEFAULT_SCORES = (
    "factor_vae.eval_accuracy",
    "dci.disentanglement",
    "dci.completeness",
    "dci.informativeness_test",
    "mig",
)
NO_STD = "—"
# Column names for the headline scores: (metric, field) -> the name papers print.
SHORT_NAMES = {
    ("factor_vae", "eval_accuracy"): "FactorVAE",
    ("beta_vae", "eval_accuracy"): "beta-VAE score",
    ("dci", "disentanglement"): "DCI D",
    ("dci", "completeness"): "DCI C",
    ("dci", "informativeness_test"): "DCI I",
    ("mig", ""): "MIG",
    ("sap", ""): "SAP",
}


def matches(key: str, pattern: str) -> bool:
    """Whether score ``key`` is ``pattern``'s metric (any protocol suffix) and field, if it names one.

    ``matches("dci_fast.disentanglement", "dci.disentanglement")``, ``matches("mig_fast", "mig")``.
    """
    namespace, _, name = key.partition(".")
    family, dot, wanted = pattern.partition(".")
    if namespace != family and not namespace.startswith(family + "_"):
        return False
    return not dot or name == wanted


def score_name(key: str) -> str:
    """A headline score's printed name with its protocol (``dci_fast.disentanglement`` ->
    ``DCI D (fast)``); any other key as itself, in backticks."""
    namespace, _, name = key.partition(".")
    for (family, field_name), short in SHORT_NAMES.items():
        if name == field_name and (namespace == family or namespace.startswith(family + "_")):
            protocol = namespace[len(family) + 1 :]
            return f"{short} ({protocol})" if protocol else short
    return f"`{key}`"


def select_keys(cells: Iterable[dict], patterns: Sequence[str] | None = None) -> list[str]:
    """The score keys of done ``cells`` to show, in pattern order (canonical before variants).

    ``patterns=None`` means the headline ``DEFAULT_SCORES``, or every key when none of those was
    computed; explicit patterns that match nothing are an error naming the keys there are.
    """
    keys = sorted({k for c in cells if c.get("status") == "done" for k in c.get("scores", {})})
    chosen: list[str] = []
    for pattern in patterns or DEFAULT_SCORES:
        found = [k for k in keys if matches(k, pattern) and k not in chosen]
        if patterns and not found and keys:
            raise ValueError(f"no score matches {pattern!r} (scores: {', '.join(keys)})")
        chosen += found
    return chosen if chosen or patterns else keys


def mean_std(values: Sequence[float]) -> tuple[float, float | None, int]:
    """(mean, sample std with ddof=1 or None for one value, n)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else None), len(x)


@dataclass
class Row:
    """The done cells of one (dataset, method, preset, budget, overrides) group."""

    dataset: str
    method: str
    preset: str
    budget_minutes: float | None
    set_overrides: tuple[str, ...]
    cells: list[dict] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [c["seed"] for c in self.cells]

    def values(self, key: str) -> tuple[list[int], list[float]]:
        """(seeds, values) of the cells that have score ``key``."""
        have = [c for c in self.cells if key in c["scores"]]
        return [c["seed"] for c in have], [float(c["scores"][key]) for c in have]

    @property
    def series(self) -> tuple:
        """The row's identity across datasets (one bar colour)."""
        return self.label, self.preset, self.set_overrides

    @property
    def label(self) -> str:
        budget = f" @ {self.budget_minutes:g} min" if self.budget_minutes is not None else ""
        return f"{self.method}{budget}"


def read_cells(dirs: Sequence[str | Path]) -> tuple[list[dict], list[dict]]:
    """(every ``cell.json`` below ``dirs``, each with its directory as ``path``; every ``sweep.json``)."""
    cells, sweeps, seen = [], [], set()
    for root in map(Path, dirs):
        if not root.is_dir():
            raise FileNotFoundError(f"sweep directory not found: {root}")
        for kind, found in (("cell.json", cells), ("sweep.json", sweeps)):
            for path in sorted(root.rglob(kind)):
                if path.resolve() in seen:
                    continue  # the same file under two of the given directories
                seen.add(path.resolve())
                try:
                    record = json.loads(path.read_text())
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} is corrupt: {err}") from None
                found.append({**record, "path": str(path.parent)})
    if not cells and not sweeps:
        raise ValueError(f"no cell.json below {', '.join(map(str, dirs))}: not sweep directories")
    return cells, sweeps


def group(cells: Sequence[dict], sweeps: Sequence[dict] = ()) -> list[Row]:
    """Rows of done cells, by dataset, then method (in the sweeps' order), preset, budget."""
    order = {m: i for i, m in enumerate(dict.fromkeys(m for s in sweeps for m in s.get("methods", ())))}
    rows: dict[tuple, Row] = {}
    for cell in cells:
        if cell.get("status") != "done":
            continue
        key = (
            cell["dataset"],
            cell["method"],
            cell["preset"],
            cell.get("budget_minutes"),
            tuple(cell.get("set_overrides", ())),
        )
        row = rows.setdefault(key, Row(*key))
        if cell["seed"] in row.seeds:
            (other,) = [c["path"] for c in row.cells if c["seed"] == cell["seed"]]
            raise ValueError(f"seed {cell['seed']} of {row.label} twice: {other} and {cell['path']}")
        row.cells.append(cell)
    return sorted(
        rows.values(),
        key=lambda r: (
            r.dataset,
            order.get(r.method, len(order)),
            r.method,
            r.preset,
            r.budget_minutes or 0,
            r.set_overrides,
        ),
    )


def not_done(cells: Sequence[dict], sweeps: Sequence[dict]) -> list[str]:
    """One line per failed, unfinished or missing cell."""
    lines, present = [], set()
    for cell in cells:
        present.add(Path(cell["path"]).resolve())
        if cell.get("status") == "failed":
            lines.append(f"{cell['path']}: failed: {cell.get('error')}")
        elif cell.get("status") != "done":
            lines.append(f"{cell['path']}: unfinished (running or interrupted)")
    for sweep in sweeps:
        for d in sweep["datasets"]:
            for m in sweep["methods"]:
                for s in sweep["seeds"]:
                    path = Path(sweep["path"]) / d / m / f"seed{s}"
                    if path.resolve() not in present:
                        lines.append(f"{path}: missing (not run yet)")
    return lines


def _cell_text(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean, std, n = mean_std(values)
    return f"{mean:.3f} ± {NO_STD if std is None else f'{std:.3f}'} ({n})"


def _steps_text(row: Row) -> str:
    steps = [c["step"] for c in row.cells if c.get("step") is not None]
    if not steps:
        return "n/a"
    return f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}–{max(steps)}"


def markdown(rows: Sequence[Row], keys: Sequence[str], missing: Sequence[str] = ()) -> str:
    """One table per dataset: a row per method (and budget), ``mean ± std (n)`` per score."""
    lines = [
        "Mean ± sample standard deviation (ddof=1) over seeds; (n) = number of seeds, "
        f"{NO_STD} where n = 1. Steps: the range of training steps the seeds reached.",
    ]
    for dataset in dict.fromkeys(r.dataset for r in rows):
        these = [r for r in rows if r.dataset == dataset]
        shared = [o for o in these[0].set_overrides if all(o in r.set_overrides for r in these)]
        own = {id(r): [o for o in r.set_overrides if o not in shared] for r in these}
        with_own = any(own.values())
        head = [
            "method",
            "preset",
            "steps",
            *(["overrides"] if with_own else []),
            *(score_name(k) for k in keys),
        ]
        lines += ["", f"## {dataset}", ""]
        if shared:
            lines += ["Overrides of every row: " + " ".join(f"`{o}`" for o in shared), ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in these:
            extra = [" ".join(f"`{o}`" for o in own[id(r)])] if with_own else []
            cells = [_cell_text(r.values(k)[1]) for k in keys]
            lines.append("| " + " | ".join([r.label, r.preset, _steps_text(r), *extra, *cells]) + " |")
    if not rows:
        lines += ["", "No finished cells yet."]
    if missing:
        lines += ["", "## Not done", "", *(f"- {m}".replace("|", "\\|") for m in missing)]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Row], keys: Sequence[str]) -> str:
    """Long format: one line per (row, score) with mean, std (empty for n = 1), n, seeds, values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["dataset", "method", "preset", "budget_minutes", "set_overrides", "score", "mean", "std", "n"]
        + ["seeds", "values"]
    )
    for r in rows:
        for k in keys:
            seeds, values = r.values(k)
            if not values:
                continue
            mean, std, n = mean_std(values)
            writer.writerow(
                [r.dataset, r.method, r.preset, "" if r.budget_minutes is None else r.budget_minutes]
                + [" ".join(r.set_overrides), k, f"{mean:.6g}", "" if std is None else f"{std:.6g}", n]
                + [" ".join(map(str, seeds)), " ".join(f"{v:.6g}" for v in values)]
            )
    return buffer.getvalue()


def plot(rows: Sequence[Row], keys: Sequence[str], path: str | Path) -> Path:
    """Per score a grouped bar chart (datasets along x, a bar per row label) with std error bars
    and each seed's value as a dot; written atomically as PNG."""
    from matplotlib.patches import Patch

    from diffdrl.viz.grid import panels

    figure, axes = panels(max(len(keys), 1), 3, 5.0, 3.4)
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    series = list(dict.fromkeys(r.series for r in rows))  # one colour each, across datasets
    names = [f"{label} ({preset})" for label, preset, _ in series]
    names = [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    width = 0.8 / max(len(series), 1)
    colours = [f"C{i % 10}" for i in range(len(series))]
    for ax, key in zip(axes, keys, strict=False):
        for r in rows:
            seeds, values = r.values(key)
            if not values:
                continue
            j = series.index(r.series)
            x = datasets.index(r.dataset) - 0.4 + width * (j + 0.5)
            mean, std, _ = mean_std(values)
            ax.bar(x, mean, width * 0.9, yerr=std or 0.0, capsize=3, color=colours[j], alpha=0.7)
            ax.scatter([x] * len(values), values, s=10, color="black", zorder=3)
        ax.set_xticks(range(len(datasets)), datasets)
        ax.set_xlim(-0.5, len(datasets) - 0.5)
        ax.set_title(score_name(key).strip("`"), fontsize=9)
    if not keys or not rows:
        axes[0].text(0.5, 0.5, "no finished cells", ha="center", va="center")
    if series:
        legend = [Patch(color=c, alpha=0.7, label=n) for n, c in zip(names, colours, strict=True)]
        figure.legend(
            handles=legend,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(4, len(legend)),
            fontsize=8,
        )
    figure.suptitle("mean ± sample std (ddof=1) over seeds; dots: seeds", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: figure.savefig(f, format="png", bbox_inches="tight"))
    return path


def summary(dirs: Sequence[str | Path], patterns: Sequence[str] | None = None) -> str:
    """The Markdown tables of the sweeps under ``dirs`` (what ``write_table`` writes as .md)."""
    cells, sweeps = read_cells(dirs)
    return markdown(group(cells, sweeps), select_keys(cells, patterns), not_done(cells, sweeps))


def write_table(
    dirs: Sequence[str | Path], stem: str | Path, patterns: Sequence[str] | None = None
) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.png`` for the sweeps under ``dirs``."""
    cells, sweeps = read_cells(dirs)
    rows, keys = group(cells, sweeps), select_keys(cells, patterns)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, table = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".csv")
    atomic_write_text(md, markdown(rows, keys, not_done(cells, sweeps)))
    atomic_write_text(table, csv_text(rows, keys))
    return [md, table, plot(rows, keys, stem.with_name(stem.name + ".png"))]
