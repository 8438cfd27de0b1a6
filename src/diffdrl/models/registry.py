"""Every trainable model by ``model.name``: its config dataclass and its class.

The model contract the trainer, the metrics and the pictures rely on:

- ``Model(config, resolution, channels=3)``; ``config.units`` is the number of latent units;
- ``forward(x0, draws=None) -> (loss, terms)`` for a float batch (B, C, H, W) in [-1, 1], with the
  step's per-sample random draws from ``draws`` (a ``diffusion.draws.StepDraws``): the scalar loss and
  its named terms (``dict[str, Tensor]``, detached: the loss's parts and diagnostics), which the
  trainer logs as ``train/<name>`` (the latest value of each) and ``eval/<name>``, as EDM's loss
  returns its parts; nothing is read back off the model;
- ``encode(x) -> (B, K)`` units of float images or uint8 (B, H, W, C) (a VAE's posterior mean;
  K = N, or N d for EncDiff-V's vector tokens);
- optional ``conditions_on_tokens = True`` and ``forward(..., shuffle_tokens=True)``: the trainer then
  logs token reliance (loss with tokens shuffled across the batch);
- optional ``param_groups(lr) -> list[dict]`` when parts need their own optimiser settings (FactorVAE's
  discriminator);
- optional ``anchors`` (DyGA's ``GaussianAnchors``), refitted on its schedule.

First stages (``vq``, ``kl``) train under the same contract but have no units: ``is_first_stage``
is true, ``encode`` is a ``ValueError`` saying so, and ``encode_latents`` / ``decode_latents`` are
what EncDiff's ``model.first_stage.path`` uses. The unconditional denoiser (``ddpm``) has no units
either (``has_units = False``; ``encode`` is a ``ValueError``): it is DisDiff's pre-trained model.
Optional ``code_width``: K when it is not ``config.units`` (DisDiff's N d chunk coordinates);
optional ``scored_representation``: the representation the metrics score by default
(``models.representation``; DisDiff: each chunk's PCA-1).
"""

from __future__ import annotations

from diffdrl.models.ddpm import DDPM, DDPMConfig
from diffdrl.models.diffae import DiffAE, DiffAEConfig
from diffdrl.models.disdiff import DisDiff, DisDiffConfig
from diffdrl.models.encdec import EncDec, EncDecConfig
from diffdrl.models.encdiff import EncDiff, EncDiffConfig
from diffdrl.models.first_stage import KLAutoencoder, KLAutoencoderConfig, VQAutoencoder, VQAutoencoderConfig
from diffdrl.models.infodiffusion import InfoDiffusion, InfoDiffusionConfig
from diffdrl.models.latent_space import BUILTIN, check_compatible, read_info
from diffdrl.models.vae import BetaTCVAE, BetaTCVAEConfig, BetaVAE, BetaVAEConfig, FactorVAE, FactorVAEConfig

MODELS: dict[str, tuple[type, type]] = {
    "encdiff": (EncDiffConfig, EncDiff),
    "encdec": (EncDecConfig, EncDec),
    "betavae": (BetaVAEConfig, BetaVAE),
    "betatcvae": (BetaTCVAEConfig, BetaTCVAE),
    "factorvae": (FactorVAEConfig, FactorVAE),
    "vq": (VQAutoencoderConfig, VQAutoencoder),  # first stages (models/first_stage.py): no units
    "kl": (KLAutoencoderConfig, KLAutoencoder),
    "diffae": (DiffAEConfig, DiffAE),  # diffusion baselines: Diff-AE, InfoDiffusion
    "infodiffusion": (InfoDiffusionConfig, InfoDiffusion),
    "ddpm": (DDPMConfig, DDPM),  # an unconditional denoiser (models/ddpm.py): no units; DisDiff's
    "disdiff": (DisDiffConfig, DisDiff),  # pre-trained model, named by model.pretrained.path
}


def build(config, resolution: int, channels: int = 3, seed: int | None = None, dataset: str | None = None):
    """The (freshly initialised) model a model config describes; ``seed`` (``train.seed``) fixes its
    initial weights, so a run's untrained baseline is the same network it started from. ``dataset``
    (``data.name``) is checked against the dataset a built-in first stage was made for."""
    if config.name not in MODELS:
        raise ValueError(f"model.name must be one of {tuple(MODELS)}, got {config.name!r}")
    path = getattr(getattr(config, "first_stage", None), "path", None)
    if path and dataset is not None and str(path).startswith(BUILTIN):
        # a shipped first stage was made for one dataset; a run path is the user's own choice
        check_compatible(read_info(path), path, resolution, channels, dataset)
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    return MODELS[config.name][1](config, resolution, channels)
