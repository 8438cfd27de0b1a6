"""The table that ``benchmarks/gpu_check.sh`` prints last: every stage's status, the checks, the speed
ladders, the time-to-quality curve and the issue's three targets, read from the output folder's JSON.

    python benchmarks/gpu_summary.py OUT [--smoke] [--plot docs/gpu_check.png]

``--plot`` draws the ladders' images/s and the DCI curve; run it afterwards, on any machine, so the
device run's output folder stays within the 8 files the device tool brings back.

A missing or unreadable file shows as missing; nothing here measures anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def pct(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:90] if lines else "failed"


def stage_lines(out: Path) -> list[str]:
    path = out / "stages.jsonl"
    stages = [json.loads(r) for r in path.read_text().splitlines()] if path.exists() else []
    lines = [f"{'stage':<22}{'status':<12}{'seconds':>8}{'limit s':>8}  note"]
    for s in stages:
        lines.append(f"{s['stage']:<22}{s['status']:<12}{s['seconds']:>8}{s['limit_s']:>8}  {s['note']}")
    return lines


def check_lines(out: Path) -> list[str]:
    lines = [f"{'check':<24}{'result':<8}{'seconds':>8}  measured (tolerance)"]
    record = read_json(out / "checks.json")
    for c in (record or {}).get("checks", []):
        if "measured" in c:
            keys = [k.removesuffix("_min") for k in c["tolerance"]]
            spec = {k: ".5f" if "cosine" in k else ".3g" for k in keys}
            values = ", ".join(f"{k} {fmt(c['measured'][k], spec[k])}" for k in keys)
        else:
            values = last_line(c["error"])
        tol = ", ".join(f"{'>=' if k.endswith('_min') else '<='} {v:g}" for k, v in c["tolerance"].items())
        result = "pass" if c["passed"] else "FAIL"
        lines.append(f"{c['name']:<24}{result:<8}{c['seconds']:>8.1f}  {values} ({tol})")
    if record is None:
        lines.append("(no checks.json)")
    record = read_json(out / "tests.json")
    if record is None:
        return [*lines, f"{'tests (pytest -m gpu)':<24}(no tests.json)"]
    n = record["counts"]
    lines.append(
        f"{'tests (pytest -m gpu)':<24}{'pass' if record['passed'] else 'FAIL':<8}{record['seconds']:>8.1f}  "
        f"{n['passed']} passed, {n['failure']} failed, {n['error']} errors, {n['skipped']} skipped"
    )
    if not record["passed"]:
        lines += [f"  {t['outcome']}: {t['test']}" for t in record["tests"] if t["outcome"] != "passed"][:6]
    return lines


def ladder_lines(ladder: dict, name: str, datasheet: float | None) -> list[str]:
    lines = [
        f"ladder {ladder.get('preset')} ({name}): images/s of the timed steps; MFU of the measured bf16 "
        f"peak ({fmt(ladder.get('peak_bf16_tflops'))} TFLOP/s) and of the datasheet's ({fmt(datasheet)})",
        f"{'variant':<15}{'batch':>6}{'images/s':>10}{'x fp32':>8}{'warm-up s':>10}{'peak GiB':>9}{'MFU':>8}"
        f"{'MFU ds':>8}",
    ]
    rows = {r["variant"]: r for r in ladder.get("results", [])}
    fp32 = rows.get("fp32", {}).get("images_per_s")
    for r in rows.values():
        if "error" in r:
            lines.append(f"{r['variant']:<15}{'':>6}  {last_line(r['error'])}")
            continue
        ds = r["gflops_per_image"] * r["images_per_s"] / (1e3 * datasheet) if datasheet else None
        lines.append(
            f"{r['variant']:<15}{r['batch_size']:>6}{r['images_per_s']:>10.1f}"
            f"{fmt(fp32 and r['images_per_s'] / fp32, '.2f'):>8}{r['warmup_s']:>10.1f}"
            f"{fmt(r['peak_memory_gib'], '.1f'):>9}{pct(r.get('mfu_bf16_peak')):>8}{pct(ds):>8}"
        )
    return lines


def quality_lines(quality: dict, name: str) -> list[str]:
    lines = [
        f"time to quality: {quality.get('preset')} ({name}), target DCI D >= "
        f"{quality.get('target_dci_disentanglement')}, metrics {quality.get('metrics_preset')}, "
        f"batch {quality.get('batch_size')}: {'reached' if quality.get('reached') else 'not reached'}",
        f"{'train min':>10}{'wall min':>10}{'step':>9}{'DCI D':>8}{'DCI C':>8}{'FactorVAE':>11}",
    ]
    for p in quality.get("points", []):
        lines.append(
            f"{p['train_minutes']:>10.2f}{p['wall_minutes']:>10.2f}{p['step']:>9}"
            f"{fmt(p['dci_disentanglement'], '.3f'):>8}{fmt(p['dci_completeness'], '.3f'):>8}"
            f"{fmt(p['factor_vae'], '.3f'):>11}"
        )
    return lines


def target_lines(ladder: dict, quality: dict, smoke: bool) -> list[str]:
    """The issue's three targets, each met, not met, or not measured."""
    rows = {r["variant"]: r for r in ladder.get("results", []) if "error" not in r}
    fast, fp32 = rows.get("fast_path"), rows.get("fp32")
    mfu = fast.get("mfu_bf16_peak") if fast else None
    speedup = fast["images_per_s"] / fp32["images_per_s"] if fast and fp32 else None
    points = quality.get("points") or []
    best = max((p["dci_disentanglement"] or 0.0 for p in points), default=None)
    preset = ladder.get("preset", "paper")
    lines = ["targets" + (" (smoke: not measurements)" if smoke else "")]
    for value, target, text in (
        (mfu, 0.40, f"{preset} MFU with the fast path >= 0.40"),
        (speedup, 5.0, f"{preset} fast path / fp32 images/s >= 5"),
        (best, 0.9, "DCI D >= 0.9 within the run (best point)"),
    ):
        state = "not measured" if value is None else ("met" if value >= target else "NOT met")
        lines.append(f"{text:<46}{fmt(value, '.3f'):>8}  {state}")
    return lines


def summary(args: argparse.Namespace) -> None:
    out = Path(args.out)
    env_ = read_json(out / "env.json") or {}
    smoke = bool(env_.get("smoke")) or args.smoke
    title = "gpu_check summary" + (
        " (SMOKE: CPU, tiny shapes; no figure here is a measurement)" if smoke else ""
    )
    lines = [title]
    if env_:
        lines.append(
            f"device {env_['device_name']} ({env_['device']}), torch {env_['torch']}, CUDA {env_['cuda']}, "
            f"bf16 matmul {env_['measured_bf16_tflops']:.1f} TFLOP/s measured (datasheet "
            f"{fmt(env_['datasheet_bf16_tflops'], '.1f')})"
        )
    lines += ["", *stage_lines(out), "", *check_lines(out)]
    ladders = {path.name: read_json(path) or {} for path in sorted(out.glob("gpu_train-*.json"))}
    for name, ladder in ladders.items():
        lines += ["", *ladder_lines(ladder, name, env_.get("datasheet_bf16_tflops"))]
    quality = {}
    for path in sorted(out.glob("gpu_quality-*.json")):
        quality = read_json(path) or {}
        lines += ["", *quality_lines(quality, path.name)]
    # the targets are the paper preset's; --smoke has only the tiny preset's ladder
    paper = next((ld for ld in ladders.values() if ld.get("preset") == "paper"), None)
    ladder = paper or (next(iter(ladders.values()), {}) if smoke else {})
    lines += ["", *target_lines(ladder, quality, smoke)]
    print("\n".join(lines))


def plot(out: Path, path: Path, smoke: bool) -> None:
    """The ladders' images/s (bars, labelled with MFU) beside the DCI D curve, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ladders = [read_json(p) or {} for p in sorted(out.glob("gpu_train-*.json"))]
    curves = [read_json(p) or {} for p in sorted(out.glob("gpu_quality-*.json"))]
    if not ladders and not curves:
        raise SystemExit(f"gpu_summary.py: {out} holds no gpu_train-*.json or gpu_quality-*.json to plot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    names = list(
        dict.fromkeys(r["variant"] for ld in ladders for r in ld.get("results", []) if "error" not in r)
    )
    width = 0.8 / max(len(ladders), 1)
    for i, ladder in enumerate(ladders):
        rows = [r for r in ladder.get("results", []) if "error" not in r]
        x = [names.index(r["variant"]) + (i - (len(ladders) - 1) / 2) * width for r in rows]
        bars = left.bar(x, [r["images_per_s"] for r in rows], width, label=ladder.get("preset"))
        left.bar_label(bars, [f"MFU {pct(r.get('mfu_bf16_peak'))}" for r in rows], fontsize=8)
    left.set_xticks(range(len(names)), names)
    left.set(ylabel="images/s (timed steps)", title="speed ladder, each switch added in turn")
    left.legend(title="preset")
    for curve in curves:
        points = [p for p in curve.get("points", []) if p["dci_disentanglement"] is not None]
        right.plot([p["train_minutes"] for p in points], [p["dci_disentanglement"] for p in points], "o-",
                   label=f"{curve.get('preset')}, batch {curve.get('batch_size')}")  # fmt: skip
        target = curve.get("target_dci_disentanglement")
        if target is not None:
            right.axhline(target, color="grey", linestyle="--", linewidth=1)
            right.annotate(f"target {target:g}", (0, target), xytext=(4, 3), textcoords="offset points")
    right.set(xlabel="training minutes", ylabel="DCI disentanglement", ylim=(0, 1), title="time to quality")
    right.set_xlim(left=0)
    if curves:
        right.legend()
    env_ = read_json(out / "env.json") or {}
    fig.suptitle(
        f"{env_.get('device_name', '?')}, torch {env_.get('torch', '?')}" + (" (SMOKE)" if smoke else "")
    )
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the output folder of gpu_check.sh")
    parser.add_argument("--smoke", action="store_true", help="label the figures as a smoke run's")
    parser.add_argument(
        "--plot", metavar="PNG", help="also draw the ladders and the curve (afterwards, here)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    if not out.is_dir():
        raise SystemExit(f"gpu_summary.py: no folder {args.out!r}")
    summary(args)
    if args.plot:
        plot(out, Path(args.plot), args.smoke or bool((read_json(out / "env.json") or {}).get("smoke")))


if __name__ == "__main__":
    main()
