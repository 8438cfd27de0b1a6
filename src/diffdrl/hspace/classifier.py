"""Factor classifiers trained here on ground-truth data: our replacement for CLIP and LPIPS (ours).

Asyrp steers its edits with a directional CLIP loss and guided diffusion uses an ImageNet
classifier; both need downloaded weights. With ground-truth factors we train our own instead:

- a *noise-free* classifier p(y_f | x) for every factor f, used on Asyrp's predicted x0 P_t as the
  edit loss (``delta.py``);
- a *noise-conditional* classifier p(y_f | x_t, t), trained on x_t at random t, for classifier
  guidance (``guidance.py``, Dhariwal & Nichol 2021);
- a *held-out* noise-free classifier (another seed, other images, wider) that only evaluates edits
  (``benchmarks/hspace.py``), so no method is scored by the network it was trained against.

One small CNN with one linear head per factor (logits concatenated); t enters as a sinusoidal
embedding added to the pooled features when ``noisy``. Stored as safetensors + JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from diffdrl.atomic import atomic_write_text, temporary_sibling
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.schedule import NoiseSchedule, ScheduleConfig


@dataclass
class ClassifierConfig:
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    resolution: int
    channels: int = 3
    width: int = 32
    noisy: bool = False  # noise-conditional: input x_t and t
    timesteps: int = 1000

    def __post_init__(self):
        self.factor_names, self.factor_sizes = tuple(self.factor_names), tuple(self.factor_sizes)
        if not self.factor_sizes or len(self.factor_names) != len(self.factor_sizes):
            raise ValueError("a factor classifier needs one size per factor name, and at least one factor")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {self.resolution}")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of integer timesteps (Transformer / DDPM style)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float().unsqueeze(1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class FactorClassifier(nn.Module):
    """Logits (B, sum of factor sizes) of float images (B, C, H, W) in [-1, 1] (and t if noisy)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(
            nn.Conv2d(config.channels, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.GroupNorm(8, 4 * w), nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 4, 2, 1), nn.GroupNorm(8, 4 * w), nn.SiLU(),
        )  # fmt: skip
        side = config.resolution // 8
        self.flat = nn.Linear(4 * w * side * side, 8 * w)
        self.time = nn.Linear(8 * w, 8 * w) if config.noisy else None
        self.head = nn.Linear(8 * w, sum(config.factor_sizes))

    def embed(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """The penultimate features (B, 8 width): a perceptual-ish distance without LPIPS."""
        z = self.flat(self.features(x).flatten(1))
        if self.time is not None:
            if t is None:
                raise ValueError("a noise-conditional classifier needs the timestep t")
            z = z + self.time(timestep_embedding(t, z.shape[1]))
        return F.silu(z)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(x, t))

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Per-factor logits."""
        return list(logits.split(list(self.config.factor_sizes), dim=1))

    def factor_index(self, name: str) -> int:
        if name not in self.config.factor_names:
            raise ValueError(f"unknown factor {name!r} (factors: {', '.join(self.config.factor_names)})")
        return self.config.factor_names.index(name)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: torch.Tensor | None = None, batch_size: int = 256) -> np.ndarray:
        """Predicted factor codes (B, F) int."""
        out = []
        for i in range(0, len(x), batch_size):
            logits = self(x[i : i + batch_size], None if t is None else t[i : i + batch_size])
            out.append(torch.stack([p.argmax(1) for p in self.split(logits)], 1).cpu().numpy())
        return np.concatenate(out)

    def log_prob(self, x: torch.Tensor, factor: int, value: torch.Tensor, t=None) -> torch.Tensor:
        """log p(y_factor = value | x (, t)) per image (B,)."""
        logits = self.split(self(x, t))[factor]
        return logits.log_softmax(1).gather(1, value.view(-1, 1)).squeeze(1)


def factor_loss(model: FactorClassifier, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(p, codes[:, f]) for f, p in enumerate(model.split(logits)))


def train_classifier(
    data,
    config: ClassifierConfig,
    *,
    images: int = 4096,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    schedule: ScheduleConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[FactorClassifier, dict]:
    """A classifier trained on ``images`` ground-truth images of ``data`` (rendered once), and its
    held-out accuracy per factor on 512 fresh images (at random t when noisy)."""
    if not getattr(data, "factor_sizes", None):
        raise ValueError("a factor classifier needs a dataset with ground-truth factors")
    if config.noisy and schedule is None:
        raise ValueError("a noise-conditional classifier needs the model's noise schedule")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    codes, pics = data.sample(images, rng)
    x_all = to_model_input(pics)
    y_all = torch.from_numpy(np.asarray(codes)).long()
    noise = NoiseSchedule(schedule) if config.noisy else None
    model = FactorClassifier(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)

    def noised(x):
        if noise is None:
            return x, None
        t = torch.randint(0, config.timesteps, (len(x),), generator=gen)
        return noise.q_sample(x, t, torch.randn(x.shape, generator=gen)), t

    model.train()
    bar = tqdm(range(steps), disable=not progress, desc="classifier", leave=False)
    for _ in bar:
        idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
        x, t = noised(x_all[idx])
        loss = factor_loss(model, model(x, t), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    test_codes, test_pics = data.sample(512, np.random.default_rng(seed + 10_000))
    x_test, t_test = noised(to_model_input(test_pics))
    pred = model.predict(x_test, t_test)
    accuracy = {n: float((pred[:, f] == test_codes[:, f]).mean()) for f, n in enumerate(config.factor_names)}
    return model, accuracy


def save_classifier(model: FactorClassifier, path: str | Path, info: dict | None = None) -> Path:
    """``path``.safetensors + ``path``.json (config and ``info``), each written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = path.with_suffix(".safetensors")
    tmp = temporary_sibling(weights)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(weights)
    atomic_write_text(path.with_suffix(".json"), json.dumps({"config": asdict(model.config), **(info or {})}))
    return weights


def load_classifier(path: str | Path) -> tuple[FactorClassifier, dict]:
    path = Path(path)
    meta_path, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not meta_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"no classifier at {path} (needs {meta_path.name} and {weights.name})")
    meta = json.loads(meta_path.read_text())
    model = FactorClassifier(ClassifierConfig(**meta["config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), meta
