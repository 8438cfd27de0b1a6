"""What the trainer does between steps, apart from checkpoints: the held-out loss and token
reliance, disentanglement metrics of the EMA model, and DyGA's anchor refits.

Plain functions of what they need (a model, images, seeds); the trainer decides when each is due,
adds the step and clock to the row each returns, and writes it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from diffdrl.diffusion.draws import StepDraws
from diffdrl.models.representation import representation
from diffdrl.training.batches import ANCHOR_STREAM, step_rng, step_seed
from diffdrl.training.ema import EMA


def check_metrics(names: list[str]) -> None:
    """``ValueError`` naming the unknown ones among the metrics ``train.metrics`` asks for."""
    if names:
        from diffdrl.metrics import METRICS

        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise ValueError(f"train.metrics: unknown {unknown} (metrics: {', '.join(METRICS)})")


@torch.no_grad()
def held_out_loss(
    model: torch.nn.Module, x: torch.Tensor, seed: int, autocast=contextlib.nullcontext
) -> dict[str, float]:
    """Loss on a fixed batch ``x`` with fixed draws (from ``seed``), and, for token-conditioned
    models, with tokens shuffled across the batch: the relative rise is the token reliance."""
    model.eval()
    losses = {}
    for shuffle in (False, True) if getattr(model, "conditions_on_tokens", False) else (False,):
        draws = StepDraws.seeded(seed, len(x), x.device)
        with autocast():
            kwargs = {"shuffle_tokens": True} if shuffle else {}
            loss, parts = model(x, draws=draws, **kwargs)
        losses[shuffle] = float(loss)
        if not shuffle:  # the loss's parts on the held-out batch (a first stage's PSNR, SSIM, usage)
            terms = {f"eval/{k}": float(v) for k, v in parts.items()}
    model.train()
    row = {"eval/loss": losses[False], **terms}
    if True in losses:
        row["eval/loss_shuffled_tokens"] = losses[True]
        row["eval/token_reliance"] = losses[True] / losses[False] - 1.0
    return row


def ema_copy(model: torch.nn.Module, ema: EMA) -> torch.nn.Module:
    """A copy of ``model`` carrying the EMA weights, in eval mode (what ``load_model`` returns)."""
    copied = copy.deepcopy(model)
    copied.load_state_dict(ema.state_dict())
    return copied.eval()


def disentanglement_scores(
    model: torch.nn.Module, dataset, metrics: list[str], seed: int, preset: str
) -> dict:
    """The named disentanglement metrics of ``model``'s units on ``dataset``."""
    from diffdrl.metrics import evaluate

    represent = representation(model, data=dataset, seed=seed)  # the model's own representation
    return evaluate(dataset, represent, list(metrics), seed=seed, preset=preset, progress=False)


@torch.no_grad()
def refit_anchors(
    model: torch.nn.Module,
    ema: EMA,
    images: Callable[[np.ndarray], torch.Tensor],
    dataset_size: int,
    seed: int,
    step: int,
    batch_size: int,
    progress: bool = False,
) -> dict:
    """DyGA: refit every unit's mixture on the raw tokens of fresh training images (``images``
    maps dataset indices to model input; the same on every process: same indices, same generator),
    then give the EMA copy the same mixtures."""
    count = min(dataset_size, model.anchors.config.max_fit_tokens)
    index = step_rng(seed, step, ANCHOR_STREAM).integers(0, dataset_size, size=count)
    model.eval()
    tokens = []
    for i in tqdm(range(0, count, batch_size), desc="anchoring: encode", leave=False, disable=not progress):
        tokens.append(model.raw_tokens(model.encode_input(images(index[i : i + batch_size]))).float())
    model.train()
    device = tokens[0].device
    gen = torch.Generator(device).manual_seed(step_seed(seed, step, ANCHOR_STREAM))
    stats = model.anchors.fit(torch.cat(tokens), gen)
    for key, value in model.anchors.state_dict(prefix="anchors.").items():
        ema.shadow[key].copy_(value)  # EMA of mixtures would blend old and new ones
    return {
        **{f"anchoring/{k}": v for k, v in stats.items() if k != "components"},
        "anchoring/components": stats["components"],
    }
