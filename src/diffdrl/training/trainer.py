"""The training loop: batches -> loss -> AdamW step -> EMA, with evaluation and checkpoints on a
schedule, exact resume, and a hard stop on a non-finite loss.

Reproducibility: every random draw of step k (batch indices, timesteps, noise, dropout) comes
from generators seeded by (seed, k) (``training.batches``), so the state to resume is just the
step plus the tensors; a resumed run ends bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from diffdrl import __version__
from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.models import registry
from diffdrl.training.batches import (
    ANCHOR_STREAM,
    EVAL_STREAM,
    NOISE_STREAM,
    BatchStream,
    batch_at,
    step_rng,
    step_seed,
)
from diffdrl.training.checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from diffdrl.training.config import Config, dump_config
from diffdrl.training.ema import EMA


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    checkpoint: Path | None


def build_model(config: Config) -> torch.nn.Module:
    """The model a config describes (``model.name``), freshly initialised from ``train.seed``."""
    torch.manual_seed(config.train.seed)
    return registry.build(config.model, config.data.resolution)


def lr_at(step: int, config: Config) -> float:
    """Linear warm-up to ``train.lr``, then constant (as released)."""
    warmup = config.train.warmup_steps
    return config.train.lr * min(1.0, (step + 1) / warmup) if warmup else config.train.lr


def _set_lr(optimizer: torch.optim.Optimizer, step: int, config: Config) -> None:
    """Every parameter group follows the schedule, scaled by its own base rate (``param_groups``)."""
    scale = lr_at(step, config) / config.train.lr
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop log rows written after ``step`` (they belong to the run's abandoned future)."""
    if path.exists():
        rows = [r for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= step]
        atomic_write_text(path, "".join(r + "\n" for r in rows))


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


class Trainer:
    def __init__(self, config: Config, run_dir: Path, resume: bool = False, progress: bool = True):
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        tc = config.train
        if tc.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but no CUDA device is available")
        existing = latest_checkpoint(self.run_dir)
        if existing is not None and not resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest {existing.name}); "
                "pass --resume to continue it or choose another --out"
            )
        self.accelerator = Accelerator(cpu=tc.device == "cpu", mixed_precision=tc.mixed_precision)
        self.rank, world = self.accelerator.process_index, self.accelerator.num_processes
        if tc.batch_size % world:
            raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by the {world} processes")
        self.local_batch_size = tc.batch_size // world
        self.dataset = make_dataset(config.data.name, config.data.path, config.data.resolution)
        if tc.metrics:
            from diffdrl.metrics import METRICS

            unknown = [m for m in tc.metrics if m not in METRICS]
            if unknown:
                raise ValueError(f"train.metrics: unknown {unknown} (metrics: {', '.join(METRICS)})")
        model = build_model(config)
        if tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        groups = model.param_groups(tc.lr) if hasattr(model, "param_groups") else model.parameters()
        optimizer = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.ema = EMA(self.unwrapped, tc.ema_decay)
        self.step, self.train_seconds = 0, 0.0
        if resume and existing is not None:
            self._load(existing)
        if tc.compile:
            self.model = torch.compile(self.model)
        self.is_main = self.accelerator.is_main_process
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", dump_config(config))
            for log in ("train_log.jsonl", "metrics.jsonl"):
                _truncate_jsonl(self.run_dir / log, self.step)

    @property
    def unwrapped(self) -> torch.nn.Module:
        """The plain model (no DDP, mixed-precision or torch.compile wrapper): checkpoint keys stay stable."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def _to_input(self, images) -> torch.Tensor:
        x = to_model_input(images).to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.config.train.channels_last else x

    # -- checkpoints --------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        tensors, state = load_checkpoint(path)
        try:
            self.unwrapped.load_state_dict(tensors["model"])
            self.ema.load_state_dict(tensors["ema"])
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"checkpoint {path} does not match the configured model: {first}") from None
        self.optimizer.load_state_dict(optimizer_from_tensors(tensors["optimizer"], state["optimizer"]))
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def save(self, loss: float | None) -> Path | None:
        """Checkpoint the current step (main process only; the others wait for it)."""
        if not self.is_main:
            self.accelerator.wait_for_everyone()
            return None
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer.state_dict())
        state = {
            "step": self.step,
            "seed": self.config.train.seed,
            "loss": loss,
            "train_seconds": self.train_seconds,
            "rng": "counter-based: every draw of step k is seeded by (train.seed, k)",
            "optimizer": opt_meta,
            "diffdrl_version": __version__,
            "time": time.time(),
        }
        tensors = {
            "model": self.unwrapped.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": opt_tensors,
        }
        path = save_checkpoint(self.run_dir, self.step, tensors, state, self.config.train.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return path

    # -- evaluation ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Loss on a fixed batch with fixed noise, and (for token-conditioned models) with tokens
        shuffled across the batch."""
        tc = self.config.train
        x = self._to_input(batch_at(self.dataset, tc.eval_batch_size, tc.seed, 0, EVAL_STREAM))
        model = self.unwrapped
        model.eval()
        losses = {}
        for shuffle in (False, True) if getattr(model, "conditions_on_tokens", False) else (False,):
            gen = torch.Generator(self.device).manual_seed(step_seed(tc.seed, 0, EVAL_STREAM))
            with self.accelerator.autocast():
                kwargs = {"shuffle_tokens": True} if shuffle else {}
                losses[shuffle] = float(model(x, generator=gen, **kwargs))
        model.train()
        row = {"step": self.step, "train_seconds": self.train_seconds, "eval/loss": losses[False]}
        if True in losses:
            row["eval/loss_shuffled_tokens"] = losses[True]
            row["eval/token_reliance"] = losses[True] / losses[False] - 1.0
        return row

    def ema_model(self) -> torch.nn.Module:
        """A copy of the model carrying the EMA weights, in eval mode."""
        model = copy.deepcopy(self.unwrapped)
        model.load_state_dict(self.ema.state_dict())
        return model.eval()

    def evaluate_metrics(self) -> dict:
        """The configured disentanglement metrics of the EMA model (what ``load_model`` returns)."""
        from diffdrl.api import representation
        from diffdrl.metrics import evaluate

        tc = self.config.train
        scores = evaluate(
            self.dataset,
            representation(self.ema_model()),
            list(tc.metrics),
            seed=tc.seed,
            preset=tc.metrics_preset,
            progress=False,
        )
        return {"step": self.step, "train_seconds": self.train_seconds, **scores}

    @torch.no_grad()
    def refit_anchors(self) -> dict:
        """DyGA: refit every unit's mixture on the raw tokens of fresh training images (the same on
        every process: same images, same generator), then give the EMA copy the same mixtures."""
        model, tc = self.unwrapped, self.config.train
        count = min(len(self.dataset), model.anchors.config.max_fit_tokens)
        index = step_rng(tc.seed, self.step, ANCHOR_STREAM).integers(0, len(self.dataset), size=count)
        model.eval()
        tokens = []
        for i in tqdm(
            range(0, count, tc.eval_batch_size),
            desc="anchoring: encode",
            leave=False,
            disable=not (self.progress and self.is_main),
        ):
            x = self._to_input(self.dataset.images_at(index[i : i + tc.eval_batch_size]))
            tokens.append(model.raw_tokens(model.encoder(x)).float())
        model.train()
        gen = torch.Generator(self.device).manual_seed(step_seed(tc.seed, self.step, ANCHOR_STREAM))
        stats = model.anchors.fit(torch.cat(tokens), gen)
        for key, value in model.anchors.state_dict(prefix="anchors.").items():
            self.ema.shadow[key].copy_(value)  # EMA of mixtures would blend old and new ones
        return {
            "step": self.step,
            **{f"anchoring/{k}": v for k, v in stats.items() if k != "components"},
            "anchoring/components": stats["components"],
        }

    @property
    def anchors(self):
        """DyGA's anchors, or None for models without them."""
        return getattr(self.unwrapped, "anchors", None)

    def out_of_time(self) -> bool:
        budget = self.config.train.time_budget_minutes
        return bool(budget) and self.train_seconds >= 60.0 * budget

    def _finishing(self) -> bool:
        """This step is the run's last: the step count or the time budget is reached."""
        return self.step == self.config.train.steps or self.out_of_time()

    def _metrics_due(self) -> bool:
        tc = self.config.train
        every = tc.metrics_every and self.step % tc.metrics_every == 0
        return bool(tc.metrics) and (every or self._finishing())

    # -- the loop -----------------------------------------------------------------------------

    def train(self) -> TrainResult:
        tc = self.config.train
        from torch.utils.tensorboard import SummaryWriter

        writer = (
            SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step) if self.is_main else None
        )
        stream = BatchStream(self.dataset, self.local_batch_size, tc.seed, self.step, tc.steps, self.rank)
        bar = tqdm(
            total=tc.steps,
            initial=self.step,
            disable=not (self.progress and self.is_main),
            desc="train",
            dynamic_ncols=True,
        )

        def log(row: dict, file: str, prefix: str = "") -> None:
            _append_jsonl(self.run_dir / file, row)
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    writer.add_scalar(prefix + key, value, self.step)

        self.model.train()
        loss_value, window, tick = None, [], time.perf_counter()
        window_start = tick
        last_saved = latest_checkpoint(self.run_dir)
        if self.out_of_time():
            return TrainResult(self.run_dir, self.step, None, last_saved)
        try:
            for step, images in stream:
                loss_value = self._step(step, images, last_saved)
                self.step = step + 1
                window.append(loss_value)
                bar.update(1)
                side_jobs = time.perf_counter()  # refits, evaluations, checkpoints: not throughput
                self.train_seconds += side_jobs - tick
                if self.config.train.time_budget_minutes:
                    self._agree_on_time()
                last = self._finishing()
                if self.anchors is not None and self.anchors.should_refit(self.step):
                    row = self.refit_anchors()
                    if self.is_main:
                        log(row, "metrics.jsonl")
                        bar.write(
                            f"step {self.step}: anchors refit, {row['anchoring/components_mean']:.1f} "
                            f"components per unit, {row['anchoring/fit_seconds']:.1f} s"
                        )
                if self.is_main and (self.step % tc.log_every == 0 or last):
                    row = {
                        "step": self.step,
                        "train_seconds": self.train_seconds,
                        "loss": sum(window) / len(window),
                        "lr": lr_at(step, self.config),
                        "images_per_s": len(window) * tc.batch_size / (side_jobs - window_start),
                        **{k: float(v) for k, v in getattr(self.unwrapped, "last_terms", {}).items()},
                    }
                    if self.anchors is not None and self.anchors.last_lambda is not None:
                        row["anchoring_lambda"] = float(self.anchors.last_lambda)
                    log(row, "train_log.jsonl", "train/")
                    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
                    window, window_start = [], side_jobs
                if self.is_main and (self.step % tc.eval_every == 0 or last):
                    log(self.evaluate(), "metrics.jsonl")
                if self.is_main and self._metrics_due():
                    log(self.evaluate_metrics(), "metrics.jsonl", "metrics/")
                if self.step % tc.checkpoint_every == 0 or last:
                    last_saved = self.save(loss_value)
                tick = time.perf_counter()
                window_start += tick - side_jobs
                if last:
                    break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return TrainResult(self.run_dir, self.step, loss_value, latest_checkpoint(self.run_dir))

    def _agree_on_time(self) -> None:
        """Every process stops at the same step: all take the main process's clock."""
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            clock = torch.tensor([self.train_seconds], dtype=torch.float64, device=self.device)
            self.train_seconds = float(broadcast(clock, from_process=0))

    def _step(self, step: int, images, last_saved: Path | None) -> float:
        """One optimisation step on batch ``step``; returns its loss."""
        tc = self.config.train
        x = self._to_input(images)
        _set_lr(self.optimizer, step, self.config)
        seed = step_seed(tc.seed, step, NOISE_STREAM, self.rank)
        torch.manual_seed(seed)  # dropout, skip dropout and any other global-RNG draws
        gen = torch.Generator(self.device).manual_seed(seed)
        with self.accelerator.autocast():
            loss = self.model(x, generator=gen)
        loss_value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            where = f"last good checkpoint: {last_saved}" if last_saved else "no checkpoint yet"
            raise NonFiniteLossError(f"loss is {loss_value} at step {step}; stopped without saving ({where})")
        self.accelerator.backward(loss)
        if tc.grad_clip:
            self.accelerator.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.unwrapped, step)
        return loss_value


def train(config: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``config`` into ``run_dir`` (continuing its latest checkpoint when ``resume``)."""
    return Trainer(config, run_dir, resume=resume, progress=progress).train()
