"""The training loop: batches -> loss -> AdamW step -> EMA, with evaluation and checkpoints on a
schedule, exact resume, and a hard stop on a non-finite loss.

Reproducibility: every random draw of step k (batch indices, timesteps, noise, dropout) comes
from generators seeded by (seed, k) (``training.batches``), so the state to resume is just the
step plus the tensors; a resumed run ends bit-identical to an uninterrupted one on CPU.

Several processes (``accelerate launch -m diffdrl train ...``, one per GPU, any number of nodes):
``train.batch_size`` is the global batch; the batch indices, timesteps and noise of step k are
drawn for the global batch from (seed, k) and each process takes its slice, gradients are
averaged (DDP), and BatchNorm layers become SyncBatchNorm on CUDA, so P processes train what one
process with the same batch would, to float rounding. Exceptions: dropout and Skip Dropout draw
from each process's own generator (seeded by seed, k and rank); on CPU (gloo) BatchNorm cannot be
synchronised and keeps per-process statistics (a warning says so); losses over the batch as a
whole (beta-TCVAE's minibatch estimate, FactorVAE's permutations) see the local batch. Only the
main process writes checkpoints, logs and metrics.

Speed switches (``train.fast_path``, ``mixed_precision``, ``channels_last``, ``compile``,
``data_on_device``, ``lr_scaling``; see ``TrainConfig``) are resolved once at the start, logged,
and stored in every checkpoint's ``state.json`` under ``settings``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from diffdrl.atomic import atomic_write_text
from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.models import registry
from diffdrl.training.batches import (
    NOISE_STREAM,
    BatchStream,
    batch_index,
    global_batch_draws,
    image_source,
    step_seed,
)
from diffdrl.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from diffdrl.training.config import Config, dump_config
from diffdrl.training.ema import EMA
from diffdrl.training.hardware import autocast, resolve_precision, sync_batchnorm, use_tf32
from diffdrl.training.side_jobs import SideJobs
from diffdrl.version import __version__

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    checkpoint: Path | None



def lr_at(step: int, config: Config) -> float:
    """Linear warm-up to the learning rate (``train.lr``, scaled by ``train.lr_scaling``), then
    constant (as released)."""
    warmup, lr = config.train.warmup_steps, config.train.effective_lr
    return lr * min(1.0, (step + 1) / warmup) if warmup else lr


def _set_lr(optimizer: torch.optim.Optimizer, step: int, config: Config) -> None:
    """Every parameter group follows the schedule, scaled by its own base rate (``param_groups``)."""
    scale = lr_at(step, config) / config.train.effective_lr
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


class Trainer(SideJobs):
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
        # accelerate places the model and runs DDP; precision is handled here (``autocast``), so that
        # runs with different precisions can share a process (accelerate fixes it per process)
        self.accelerator = Accelerator(cpu=tc.device == "cpu", mixed_precision="no")
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        if tc.batch_size % self.world:
            raise ValueError(
                f"train.batch_size={tc.batch_size} must be divisible by the {self.world} processes"
            )
        self.local_batch_size = tc.batch_size // self.world
        self.is_main = self.accelerator.is_main_process
        fast = tc.fast_path and self.device.type == "cuda"
        self.precision, precision_note = resolve_precision(tc, self.device)
        self.channels_last = tc.channels_last or fast
        if fast:
            use_tf32()
        self.dataset = make_dataset(config.data.name, config.data.path, config.data.resolution)
        if tc.metrics:
            from diffdrl.metrics import METRICS

            unknown = [m for m in tc.metrics if m not in METRICS]
            if unknown:
                raise ValueError(f"train.metrics: unknown {unknown} (metrics: {', '.join(METRICS)})")
        model = registry.build(config.model, config.data.resolution, seed=config.train.seed).to(self.device)
        stage = getattr(model, "first_stage", None)  # latent diffusion: LDM's scale_by_std, measured once
        if stage is not None and not (resume and existing is not None):  # a resume loads it instead
            first = batch_index(len(self.dataset), tc.batch_size, tc.seed, 0)  # the global batch of step 0
            stage.calibrate(to_model_input(torch.as_tensor(self.dataset.images_at(first))).to(self.device))
        model, batchnorm_note = sync_batchnorm(model, self.device, self.world)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        lr = tc.effective_lr
        groups = model.param_groups(lr) if hasattr(model, "param_groups") else model.parameters()
        optimizer = torch.optim.AdamW(
            groups, lr=lr, weight_decay=tc.weight_decay, **({"fused": True} if fast else {})
        )
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.ema = EMA(self.unwrapped, tc.ema_decay)
        self.step, self.train_seconds = 0, 0.0
        if resume and existing is not None:
            self._load(existing)
        if tc.compile:
            self.model = torch.compile(self.model)
        self.images = image_source(self.dataset, self.device, tc.data_on_device, progress and self.is_main)
        self.settings = {
            "device": str(self.device),
            "processes": self.world,
            "batch_per_process": self.local_batch_size,
            "mixed_precision": self.precision,
            "mixed_precision_reason": precision_note,
            "channels_last": self.channels_last,
            "fused_adamw": fast,
            "tf32": fast,
            "compile": tc.compile,
            "sync_batchnorm": batchnorm_note,
            "data": self.images.where,
            "lr": lr,
            "lr_scaling": tc.lr_scaling,
        }
        self._announce()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", dump_config(config))
            for log in ("train_log.jsonl", "metrics.jsonl"):
                _truncate_jsonl(self.run_dir / log, self.step)

    def _announce(self) -> None:
        """Log the resolved speed settings once (and show them when progress is on)."""
        s = self.settings
        on = {True: "on", False: "off"}
        precision = {"no": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[s["mixed_precision"]]
        line = (
            f"training on {s['device']} ({s['processes']} process(es), {s['batch_per_process']} images "
            f"each): {precision} ({s['mixed_precision_reason']}), channels_last {on[s['channels_last']]}, "
            f"fused AdamW {on[s['fused_adamw']]}, TF32 {on[s['tf32']]}, compile {on[s['compile']]}, "
            f"SyncBatchNorm {s['sync_batchnorm']}; data {s['data']}; lr {s['lr']:.3g} "
            f"(lr_scaling {s['lr_scaling']})"
        )
        logger.info(line)
        if self.progress and self.is_main:
            tqdm.write(line, file=sys.stderr)

    @property
    def unwrapped(self) -> torch.nn.Module:
        """The plain model (no DDP, mixed-precision or torch.compile wrapper): checkpoint keys stay stable."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def autocast(self):
        """The configured autocast around network calls (nothing for float32)."""
        return autocast(self.precision, self.device)

    def _to_input(self, images) -> torch.Tensor:
        """uint8 (B, H, W, C) from any image source -> float model input on the device (the uint8
        travels, a quarter of the float's bytes)."""
        x = to_model_input(torch.as_tensor(images).to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

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
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])

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
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "settings": self.settings,
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
        stream = BatchStream(
            self.images, len(self.dataset), tc.batch_size, tc.seed, self.step, tc.steps, self.rank, self.world
        )
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
                if self.step % tc.log_every == 0 or last:
                    terms = getattr(self.unwrapped, "last_terms", {})
                    loss_mean, *term_means = self._mean_over_processes(
                        [sum(window) / len(window), *(float(v) for v in terms.values())]
                    )
                    if self.is_main:
                        row = {
                            "step": self.step,
                            "train_seconds": self.train_seconds,
                            "loss": loss_mean,
                            "lr": lr_at(step, self.config),
                            "images_per_s": len(window) * tc.batch_size / (side_jobs - window_start),
                            **dict(zip(terms, term_means, strict=True)),
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

    def _mean_over_processes(self, values: list[float]) -> list[float]:
        """The mean of each value over the processes (every process must call this), so that
        the logged loss is the global batch's; a single process gets its values back unchanged."""
        if self.world == 1:
            return values
        from accelerate.utils import reduce

        return reduce(torch.tensor(values, dtype=torch.float64, device=self.device), "mean").tolist()

    def _agree_on_time(self) -> None:
        """Every process stops at the same step: all take the main process's clock."""
        if self.world > 1:
            from accelerate.utils import broadcast

            clock = torch.tensor([self.train_seconds], dtype=torch.float64, device=self.device)
            self.train_seconds = float(broadcast(clock, from_process=0))

    def _step(self, step: int, images, last_saved: Path | None) -> float:
        """One optimisation step on batch ``step``; returns its loss."""
        tc = self.config.train
        x = self._to_input(images)
        _set_lr(self.optimizer, step, self.config)
        torch.manual_seed(step_seed(tc.seed, step, NOISE_STREAM, self.rank))  # dropout and other global draws
        # timesteps and noise: for the global batch, the same on every process (rank 0's seed)
        gen = torch.Generator(self.device).manual_seed(step_seed(tc.seed, step, NOISE_STREAM))
        draws = (
            global_batch_draws(gen, self.rank, self.world, self.local_batch_size)
            if self.world > 1
            else contextlib.nullcontext()
        )
        with self.autocast(), draws:
            loss = self.model(x, generator=gen)
        loss_value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            where = f"last good checkpoint: {last_saved}" if last_saved else "no checkpoint yet"
            raise NonFiniteLossError(f"loss is {loss_value} at step {step}; stopped without saving ({where})")
        optimizer = self.optimizer.optimizer  # the torch optimizer inside accelerate's wrapper
        if self.scaler is None:
            self.accelerator.backward(loss)
        else:
            self.scaler.scale(loss).backward()
        if tc.grad_clip:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            self.accelerator.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.unwrapped, step)
        return loss_value


def train(config: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``config`` into ``run_dir`` (continuing its latest checkpoint when ``resume``)."""
    return Trainer(config, run_dir, resume=resume, progress=progress).train()
