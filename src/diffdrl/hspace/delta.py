"""Learned Asyrp edits: a DeltaBlock dh_t = f_t(h_t) per target attribute (Kwon et al., ICLR 2023).

The block (Asyrp's ``DeltaBlock``): 1x1 conv C -> C, plus Linear(SiLU(t_emb)), GroupNorm, SiLU,
1x1 conv, the last zero-initialised so training starts from "no edit". It is trained along the
sources' own trajectories, taking an optimiser step at every grid t of the edit interval
[T, t_edit] with the loss on the predicted x0 of the edited pass,

    L = CE(classifier_f(P_t^edit), value) + lambda_recon ||P_t^edit - P_t^source||_1,

and x_{t-1} taken by the asymmetric step (edited P_t, unedited D_t), detached. Deviations (ours):
the classifier term replaces Asyrp's directional CLIP loss (no downloadable CLIP; the noise-free
factor classifier of ``classifier.py``, trained on ground truth), the attribute is a target value
of one ground-truth factor, and the optimiser is Adam (lr 1e-3) instead of SGD at lr 0.2-0.5, which
was tuned for CLIP's loss scale. At inference dh is multiplied by a coefficient (negative
reverses the edit) and by S / S' when sampling with S' steps instead of the S it was trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from diffdrl.diffusion.sampling import EDIT_STEPS
from diffdrl.diffusion.schedule import EpsModel
from diffdrl.hspace.asymmetric import asymmetric_step, check_interval, ddim_grid, predicted_x0
from diffdrl.hspace.bottleneck import HSpace
from diffdrl.hspace.classifier import FactorClassifier, timestep_embedding


class DeltaBlock(nn.Module):
    """dh_t = f_t(h_t) for bottleneck features (B, C, s, s)."""

    def __init__(self, channels: int, groups: int = 8, time_dim: int = 64):
        super().__init__()
        if channels % groups:
            raise ValueError(f"groups={groups} must divide the bottleneck channels {channels}")
        self.time_dim = time_dim
        self.inp = nn.Conv2d(channels, channels, 1)
        self.time = nn.Linear(time_dim, channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = self.inp(h) + self.time(F.silu(timestep_embedding(t, self.time_dim))).view(len(h), -1, 1, 1)
        return self.out(F.silu(self.norm(z)))


@dataclass
class DeltaInfo:
    """What a DeltaBlock was trained for, stored beside its weights."""

    factor: str
    value: int
    t_edit: int
    steps: int
    lambda_recon: float
    epochs: int
    final_loss: float = float("nan")
    final_target_prob: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def scaled(block: DeltaBlock, coefficient: float, train_steps: int, steps: int):
    """dh(h, t) = coefficient (S / S') f_t(h), for ``edit_sample``."""
    factor = coefficient * train_steps / steps
    return lambda h, t: factor * block(h, t)


def train_delta(
    space: HSpace,
    denoise: EpsModel,
    x_T: torch.Tensor,
    betas: np.ndarray,
    classifier: FactorClassifier,
    factor: str,
    value: int,
    *,
    t_edit: int,
    steps: int = EDIT_STEPS,
    lambda_recon: float = 3.0,
    epochs: int = 1,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[DeltaBlock, DeltaInfo]:
    """A DeltaBlock that moves ``factor`` toward ``value`` on the trajectories from x_T (B, C, H, W).

    ``denoise`` must read the tokens of the same B sources (it is called on batches of x_T's rows
    in order, so pass a closure over all B tokens: see ``batched``).

    One function of ~75 lines on purpose: the training loop (trajectory, edit loss, optimiser step)
    reads top to bottom as Asyrp's Algorithm 1 does; its pieces are not reused anywhere else."""
    if classifier.config.noisy:
        raise ValueError("the edit loss needs a noise-free classifier (it reads predicted x0)")
    f = classifier.factor_index(factor)
    size = classifier.config.factor_sizes[f]
    if not 0 <= value < size:
        raise ValueError(f"value for factor {factor!r} must be in [0, {size}), got {value}")
    check_interval(t_edit, -1, len(betas))
    if epochs < 1 or batch_size < 1 or not lambda_recon >= 0:
        raise ValueError("need epochs >= 1, batch_size >= 1 and lambda_recon >= 0")
    torch.manual_seed(seed)
    with torch.no_grad():
        zero = torch.zeros(1, dtype=torch.long, device=x_T.device)
        h_probe = space.capture(lambda a, s: denoise(a, s, zero), x_T[:1], zero).h
    channels = h_probe.shape[1]
    block = DeltaBlock(channels, groups=next(g for g in (8, 4, 2, 1) if channels % g == 0)).to(x_T.device)
    opt = torch.optim.Adam(block.parameters(), lr=lr)
    for p in classifier.parameters():
        p.requires_grad_(False)
    grid = [(int(t), float(a), float(ap)) for t, a, ap in zip(*ddim_grid(betas, steps), strict=True)]
    edit_grid = [g for g in grid if g[0] >= t_edit]
    target = torch.full((batch_size,), value, dtype=torch.long, device=x_T.device)
    gen = torch.Generator().manual_seed(seed)
    loss_value, prob_value = float("nan"), float("nan")
    bar = tqdm(
        total=epochs * -(-len(x_T) // batch_size) * len(edit_grid), disable=not progress, desc="DeltaBlock"
    )
    for _ in range(epochs):
        order = torch.randperm(len(x_T), generator=gen)
        for i in range(0, len(x_T), batch_size):
            idx = order[i : i + batch_size]
            x = x_T[idx]
            for t, abar_t, abar_prev in edit_grid:
                tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
                with torch.no_grad():
                    state = space.capture(lambda a, s, idx=idx: denoise(a, s, idx), x, tt)
                eps_edit = space.decode(state, state.h + block(state.h, tt))
                p_edit = predicted_x0(x, eps_edit, abar_t)
                p_src = predicted_x0(x, state.eps, abar_t)
                log_p = classifier.split(classifier(p_edit.clamp(-1, 1)))[f].log_softmax(1)
                ce = F.nll_loss(log_p, target[: len(x)])
                loss = ce + lambda_recon * (p_edit - p_src).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x = asymmetric_step(x, state.eps, eps_edit.detach(), abar_t, abar_prev)
                loss_value = float(loss)
                prob_value = float(log_p.detach().exp()[:, value].mean())
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.3f}", p=f"{prob_value:.2f}")
    bar.close()
    info = DeltaInfo(factor, value, t_edit, steps, lambda_recon, epochs, loss_value, prob_value)
    return block.eval(), info


def batched(model, tokens: torch.Tensor):
    """denoise(x_t, t, idx): the model under the tokens of sources ``idx``, for ``train_delta``."""
    return lambda x_t, t, idx: model.denoiser(x_t, t, tokens[idx])
