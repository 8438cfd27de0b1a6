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

Around the loop, each in its own module: the run directory and its lock (``run_dir``), the resume
policy (``resume``), the model and optimizer (``build``), the clock (``clock``), the logs
(``logs``), what the processes agree on (``processes``) and the side jobs (``side_jobs``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.draws import StepDraws
from diffdrl.training import batches, side_jobs
from diffdrl.training.batches import EVAL_STREAM, NOISE_STREAM, BatchStream, batch_index, step_seed
from diffdrl.training.build import build_latent_cache, build_model, build_optimizer, lr_at, set_lr
from diffdrl.training.checkpoint import latest_checkpoint, save_checkpoint
from diffdrl.training.clock import StepClock
from diffdrl.training.config import Config, dump_config
from diffdrl.training.ema import EMA
from diffdrl.training.hardware import autocast, describe_settings, resolve_precision, speed_settings, use_tf32
from diffdrl.training.logs import TrainLogs
from diffdrl.training.preemption import StopRequests, TrainingPreempted
from diffdrl.training.processes import Processes
from diffdrl.training.resume import Loaded, checkpoint_to_resume, claim, restore, snapshot
from diffdrl.training.run_dir import start, writing
from diffdrl.training.run_lock import RunLock

logger = logging.getLogger(__name__)
__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "lr_at", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    checkpoint: Path | None


class Trainer:
    """Trains one run directory, as its single writer: ``train`` holds the run's lock
    (``run_lock``) while it runs and releases it however it ends; building a trainer only checks
    that no other trainer holds it, so trainers built and dropped leave nothing behind.

    ``resume`` continues from the newest checkpoint, or from ``resume_from`` (``"step_<k>"`` or
    ``k``), by the policy of ``training.resume``. A run directory ``train`` created is removed
    again if training fails before its first checkpoint.

    Each step k draws everything from seeds derived from (train.seed, k), so the state to resume is
    the step and the tensors; with several processes each trains its slice of the global batch.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        resume: bool = False,
        progress: bool = True,
        resume_from: str | int | None = None,
    ):
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        train_config = config.train
        if train_config.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but no CUDA device is available")
        # accelerate places the model and runs DDP; precision is handled here (``autocast``), so that
        # runs with different precisions can share a process (accelerate fixes it per process)
        self.accelerator = Accelerator(cpu=train_config.device == "cpu", mixed_precision="no")
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.processes = Processes(self.rank, self.world, self.device)
        if train_config.batch_size % self.world:
            raise ValueError(
                f"train.batch_size={train_config.batch_size} must be divisible by the {self.world} processes"
            )
        self.local_batch_size = train_config.batch_size // self.world
        self.is_main = self.accelerator.is_main_process
        if self.is_main:
            RunLock(self.run_dir).check()  # a second trainer is refused at once, changing nothing
        resumed = checkpoint_to_resume(self.run_dir, resume, resume_from)
        self.resume_from = resume_from
        self.resumed_from = resumed[0] if resumed is not None else None
        self._setup(resumed)

    def _setup(self, resumed: tuple[Path, Loaded] | None) -> None:
        """Device, precision and data; the model, its optimizer and EMA, restored when resuming."""
        config, train_config = self.config, self.config.train
        fast = train_config.fast_path and self.device.type == "cuda"
        self.precision, precision_note = resolve_precision(train_config, self.device)
        self.channels_last = train_config.channels_last or fast
        if fast:
            use_tf32()
        self.dataset = make_dataset(config.data.name, config.data.path, config.data.resolution)
        side_jobs.check_metrics(train_config.metrics)
        model, batchnorm_note = build_model(
            config, self.dataset, self.device, self.world, self.channels_last, fresh=resumed is None
        )
        optimizer = build_optimizer(model, train_config, fused=fast)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.ema = EMA(self.unwrapped, train_config.ema_decay)
        self.step, self.train_seconds = 0, 0.0
        self.window: list[float] = []  # losses since the last log row (saved in checkpoints)
        self.terms: dict[str, torch.Tensor] = {}  # the latest value of each of the loss's named terms
        if resumed is not None:
            state = restore(
                *resumed, self.unwrapped, self.ema, self.optimizer, self.scaler, self.rank, self.world
            )
            self.step, self.train_seconds, self.window = state.step, state.train_seconds, state.log_window
        self.latent_cache = build_latent_cache(config, self.unwrapped, len(self.dataset), self.device)
        if train_config.compile:
            self.model = torch.compile(self.model)
        self.images = batches.image_source(
            self.dataset, self.device, train_config.data_on_device, self.progress and self.is_main
        )
        cache = self.latent_cache.where if self.latent_cache else "off"
        self.settings = speed_settings(
            train_config, self.device, self.world, self.precision, precision_note, batchnorm_note,
            self.images.where, cache,
        )  # fmt: skip
        line = describe_settings(self.settings)
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

    @property
    def anchors(self):
        """DyGA's anchors, or None for models without them."""
        return getattr(self.unwrapped, "anchors", None)

    def autocast(self):
        """The configured autocast around network calls (nothing for float32)."""
        return autocast(self.precision, self.device)

    def _to_input(self, images) -> torch.Tensor:
        """uint8 (B, H, W, C) from any image source -> float model input on the device (the uint8
        travels, a quarter of the float's bytes)."""
        x = to_model_input(torch.as_tensor(images).to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def out_of_time(self) -> bool:
        budget = self.config.train.time_budget_minutes
        return bool(budget) and self.train_seconds >= 60.0 * budget

    def _finishing(self) -> bool:
        """This step is the run's last: the step count or the time budget is reached."""
        return self.step == self.config.train.steps or self.out_of_time()

    def _metrics_due(self) -> bool:
        train_config = self.config.train
        every = train_config.metrics_every and self.step % train_config.metrics_every == 0
        return bool(train_config.metrics) and (every or self._finishing())

    # -- checkpoints and side jobs (``training.side_jobs``) -------------------------------------

    def save(self, loss: float | None) -> Path | None:
        """Checkpoint the current step (main process only; the others wait for it)."""
        windows = self.processes.gather(self.window)
        if not self.is_main:
            self.accelerator.wait_for_everyone()
            return None
        seed, keep = self.config.train.seed, self.config.train.keep_checkpoints
        tensors, state = snapshot(
            self.unwrapped, self.ema, self.optimizer, self.scaler, step=self.step, seed=seed, loss=loss,
            train_seconds=self.train_seconds, log_windows=windows, settings=self.settings,
        )  # fmt: skip
        path = save_checkpoint(self.run_dir, self.step, tensors, state, keep)
        self.accelerator.wait_for_everyone()
        return path

    def _model_input_at(self, index) -> torch.Tensor:
        return self._to_input(self.images(index))

    def evaluate(self) -> dict:
        """The held-out loss (and token reliance) on the run's fixed evaluation batch."""
        seed, size = self.config.train.seed, self.config.train.eval_batch_size
        x = self._model_input_at(batch_index(len(self.dataset), size, seed, 0, EVAL_STREAM))
        row = side_jobs.held_out_loss(self.unwrapped, x, step_seed(seed, 0, EVAL_STREAM), self.autocast)
        return {"step": self.step, "train_seconds": self.train_seconds, **row}

    def ema_model(self) -> torch.nn.Module:
        return side_jobs.ema_copy(self.unwrapped, self.ema)

    def evaluate_metrics(self) -> dict:
        """The configured disentanglement metrics of the EMA model."""
        train_config = self.config.train
        scores = side_jobs.disentanglement_scores(
            self.ema_model(),
            self.dataset,
            train_config.metrics,
            train_config.seed,
            train_config.metrics_preset,
        )
        return {"step": self.step, "train_seconds": self.train_seconds, **scores}

    def refit_anchors(self) -> dict:
        train_config, show = self.config.train, self.progress and self.is_main
        row = side_jobs.refit_anchors(
            self.unwrapped, self.ema, self._model_input_at, len(self.dataset), train_config.seed,
            self.step, train_config.eval_batch_size, show,
        )  # fmt: skip
        return {"step": self.step, **row}

    # -- the loop -----------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Train to ``train.steps`` (or the time budget), holding the run's lock. On SIGTERM, SIGINT
        or SIGUSR1, checkpoint at the end of the current step and raise ``TrainingPreempted``; a
        non-finite loss raises ``NonFiniteLossError`` and writes no checkpoint."""
        with self._writing(), StopRequests() as stop:
            return self._train(stop)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The main process writes the run (``run_dir.writing``), from the checkpoint it loaded."""
        if not self.is_main:
            yield
            return
        with writing(self.run_dir, self.progress):
            claim(self.run_dir, self.step, self.resume_from, self.resumed_from, self.progress)
            start(self.run_dir, self.step, dump_config(self.config))
            yield

    def _train(self, stop: StopRequests) -> TrainResult:
        """The loop: a step, then on schedule a refit, a log row, an evaluation, metrics and a
        checkpoint (side jobs, off the clock); a stop request ends it after a checkpoint."""
        train_config = self.config.train
        stream = BatchStream(
            self.images, len(self.dataset), train_config.batch_size, train_config.seed, self.step,
            train_config.steps, self.rank, self.world,
        )  # fmt: skip
        loss, last_saved = None, latest_checkpoint(self.run_dir)
        with TrainLogs(self.run_dir, self.step, train_config.steps, self.is_main, self.progress) as logs:
            self.model.train()
            clock = StepClock()
            if self.out_of_time():
                return TrainResult(self.run_dir, self.step, None, last_saved)
            for step, images in stream:
                index = stream.index(step) if self.latent_cache is not None else None
                loss, terms = self._step(step, images, last_saved, index)
                self.step = step + 1
                self.window.append(loss)
                self.terms.update(terms)
                logs.bar.update(1)
                self.train_seconds += clock.end_step()  # refits, evaluations, checkpoints: not training
                if train_config.time_budget_minutes:
                    self.train_seconds = self.processes.main_clock(self.train_seconds)
                final = self._finishing()
                if self.anchors is not None and self.anchors.should_refit(self.step):
                    self._refit(logs)
                if self.step % train_config.log_every == 0 or final:
                    self._log_train(logs, clock)
                if self.is_main and (self.step % train_config.eval_every == 0 or final):
                    logs.row(self.evaluate(), "metrics.jsonl")
                if self.is_main and self._metrics_due():
                    logs.row(self.evaluate_metrics(), "metrics.jsonl", "metrics/")
                saved = self.step % train_config.checkpoint_every == 0 or final
                if saved:
                    last_saved = self.save(loss)
                if not final and (signal_name := self.processes.stop_signal(stop.signal_name)):
                    self._preempt(signal_name, loss, saved, last_saved, logs)
                clock.end_side_jobs()
                if final:
                    break
        return TrainResult(self.run_dir, self.step, loss, latest_checkpoint(self.run_dir))

    def _refit(self, logs: TrainLogs) -> None:
        row = self.refit_anchors()
        if self.is_main:
            logs.row(row, "metrics.jsonl")
            logs.write(
                f"step {self.step}: anchors refit, {row['anchoring/components_mean']:.1f} "
                f"components per unit, {row['anchoring/fit_seconds']:.1f} s"
            )

    def _log_train(self, logs: TrainLogs, clock: StepClock) -> None:
        """The train_log row (every process must call this): the mean loss since the last row over
        all processes, the latest value of each of the loss's terms, the rate and the throughput."""
        names = list(self.terms)
        loss_mean, *term_means = self.processes.mean(
            [sum(self.window) / len(self.window), *(float(v) for v in self.terms.values())]
        )
        if self.is_main:
            row = {
                "step": self.step,
                "train_seconds": self.train_seconds,
                "loss": loss_mean,
                "lr": lr_at(self.step - 1, self.config),  # the rate of the step just taken
                "images_per_s": clock.images_per_s(self.config.train.batch_size),
                **dict(zip(names, term_means, strict=True)),
            }
            logs.row(row, "train_log.jsonl", "train/")
            logs.bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
        self.window = []
        clock.new_window()

    def _preempt(self, signal_name: str, loss: float, saved: bool, checkpoint: Path | None, logs: TrainLogs):
        """Checkpoint this step (unless ``saved`` already) and stop: ``TrainingPreempted``."""
        if not saved:
            checkpoint = self.save(loss)
        if self.is_main:
            logs.write(f"{signal_name}: checkpointed step {self.step} ({checkpoint}); stopping")
        raise TrainingPreempted(signal_name, self.step, checkpoint)

    def _step(
        self, step: int, images, last_saved: Path | None, index=None
    ) -> tuple[float, dict[str, torch.Tensor]]:
        """One optimisation step on batch ``step`` (dataset items ``index``, which the latent
        cache needs); returns its loss and the loss's named terms."""
        train_config, seed = self.config.train, self.config.train.seed
        x = self._to_input(images)
        set_lr(self.optimizer, step, self.config)
        torch.manual_seed(step_seed(seed, step, NOISE_STREAM, self.rank))  # dropout and other global draws
        # timesteps and noise: drawn for the global batch from one seed, this process's rows kept
        noise_seed = step_seed(seed, step, NOISE_STREAM)
        draws = StepDraws.seeded(noise_seed, self.local_batch_size, self.device, self.rank, self.world)
        with self.autocast():  # a cached latent is encoded under the same autocast as a fresh one
            latents = {} if self.latent_cache is None else {"latents": self.latent_cache(index, x)}
            loss, terms = self.model(x, draws=draws, **latents)
        loss_value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            where = f"last good checkpoint: {last_saved}" if last_saved else "no checkpoint yet"
            raise NonFiniteLossError(f"loss is {loss_value} at step {step}; stopped without saving ({where})")
        optimizer = self.optimizer.optimizer  # the torch optimizer inside accelerate's wrapper
        if self.scaler is None:
            self.accelerator.backward(loss)
        else:
            self.scaler.scale(loss).backward()
        if train_config.grad_clip:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            self.accelerator.clip_grad_norm_(self.model.parameters(), train_config.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.unwrapped, step)
        return loss_value, terms


def train(
    config: Config,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    resume_from: str | int | None = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (continuing its newest checkpoint when ``resume``, or
    checkpoint ``resume_from``); see ``Trainer`` for locking and preemption."""
    return Trainer(config, run_dir, resume=resume, progress=progress, resume_from=resume_from).train()
