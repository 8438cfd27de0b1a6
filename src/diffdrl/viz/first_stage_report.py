"""Pictures of a first-stage autoencoder run: reconstructions, their quality, codebook usage,
and ``diffdrl report RUN`` for such a run (training curves, the same page layout as EncDiff's)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffdrl.data.ground_truth import to_model_input
from diffdrl.metrics.reconstruction import image_similarity
from diffdrl.training.runs import Run
from diffdrl.viz.grid import panels, save_figure, save_grid, to_uint8


@torch.no_grad()
def reconstructions(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 (n, H, W, C) reconstructions D(E(x)) of uint8 images (n, H, W, C)."""
    device = next(model.parameters()).device
    out = [
        to_uint8(model.reconstruct(to_model_input(images[i : i + batch_size]).to(device)).clamp(-1, 1))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def reconstruction_quality(images: np.ndarray, rebuilt: np.ndarray) -> dict[str, float]:
    """MSE, PSNR (dB) and SSIM of uint8 reconstructions against the images (metrics/reconstruction.py)."""
    a, b = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0 for x in (images, rebuilt))
    return image_similarity(a, b)


def save_reconstructions(images: np.ndarray, rebuilt: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Rows of 8: inputs above their reconstructions."""
    rows, labels = [], []
    for i in range(0, len(images), 8):
        rows += [images[i : i + 8], rebuilt[i : i + 8]]
        labels += ["input", "reconstruction"]
    return save_grid(rows, path, labels, title=title)


def save_codebook_usage(usage: torch.Tensor, path: str | Path) -> Path:
    """Each code's share of the assignments (its moving average while training), sorted."""
    share = np.sort(usage.float().cpu().numpy())[::-1]
    figure, axes = panels(1, 1, 6, 2.6)
    axes[0].bar(np.arange(len(share)), share * len(share), width=1.0)
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].set_xlabel("code (sorted by use)")
    axes[0].set_ylabel("share x codebook size")
    axes[0].set_title(
        f"codebook usage: {int((share > 0.03 / len(share)).sum())} of {len(share)} codes alive", fontsize=9
    )
    return save_figure(figure, path)


def build_first_stage_report(run: Run, out_dir=None, seed: int = 0, progress: bool = True) -> Path:
    """``RUN/report/report.html`` of a first-stage run."""
    from diffdrl.viz.report_page import plot_curves, read_jsonl, write_page

    out = Path(out_dir) if out_dir else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    bar = tqdm(total=4, desc="report", leave=False, disable=not progress)
    for title, log, png, log_keys in (
        ("Training", "train_log.jsonl", "training.png", ("loss", "l2")),
        ("Evaluations over training", "metrics.jsonl", "metrics.png", ()),
    ):
        path = plot_curves(read_jsonl(run.path / log), out / png, log, log_keys)
        sections.append((title, path, "" if path else f"Does not apply: {log} has no rows yet."))
        bar.update(1)
    _, images = run.sample(256, seed)
    rebuilt = reconstructions(run.model, images)
    quality = reconstruction_quality(images, rebuilt)
    bar.update(1)
    psnr, ssim = quality["reconstruction.psnr"], quality["reconstruction.ssim"]
    caption = f"PSNR {psnr:.2f} dB, SSIM {ssim:.3f} (256 images)"
    sections.append(
        (
            "Reconstructions",
            save_reconstructions(images[:16], rebuilt[:16], out / "reconstruction.png", caption),
            caption,
        )
    )
    quantizer = getattr(run.model, "quantizer", None)
    if quantizer is None:
        sections.append(("Codebook usage", None, "Does not apply: a KL first stage has no codebook."))
    else:
        sections.append(
            (
                "Codebook usage",
                save_codebook_usage(quantizer.usage, out / "codebook.png"),
                "Moving average of each code's share of the assignments while training.",
            )
        )
    bar.update(1)
    bar.close()
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in quality.items())
    return write_page(run, out, sections, f"<h2>Reconstruction</h2><table>{cells}</table>")
