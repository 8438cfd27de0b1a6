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

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from diffdrl.atomic import atomic_write_text, remove_dead_temporaries
from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.draws import StepDraws
from diffdrl.models import registry
from diffdrl.training import side_jobs
from diffdrl.training.batches import (
    EVAL_STREAM,
    NOISE_STREAM,
    BatchStream,
    batch_index,
    image_source,
    step_seed,
)
from diffdrl.training.checkpoint import (
    checkpoints,
    latest_checkpoint,
    load_checkpoint,
    newest_valid_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    remove_leftovers,
    save_checkpoint,
)
from diffdrl.training.config import Config, dump_config
from diffdrl.training.ema import EMA
from diffdrl.training.hardware import autocast, resolve_precision, sync_batchnorm, use_tf32
from diffdrl.training.latent_cache import LatentCache
from diffdrl.training.preemption import StopRequests, TrainingPreempted
from diffdrl.training.run_lock import RunLock
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


def _row_step(line: str) -> int | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop log rows written after ``step`` (they belong to the run's abandoned future), and a
    line cut short by a kill in the middle of an append."""
    if path.exists():
        steps = [(r, _row_step(r)) for r in path.read_text(errors="replace").splitlines()]
        atomic_write_text(path, "".join(r + "\n" for r, s in steps if s is not None and s <= step))


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


class Trainer:
    """Trains one run directory, as its single writer (``run_lock``: the main process holds the lock
    from construction until ``train`` returns or raises).

    ``resume`` continues from the newest checkpoint, which must load: a corrupt one is an error that
    names the newest valid checkpoint, to be chosen explicitly with ``resume_from`` (``"step_<k>"``
    or ``k``; checkpoints after it are moved to ``checkpoints/abandoned/``). A run directory this
    trainer created is removed again if training fails before its first checkpoint.

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
        resume = resume or resume_from is not None
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
        self.lock, self.created = None, False
        if self.is_main:
            self.created = not self.run_dir.exists()
            self.lock = RunLock(self.run_dir).acquire()
        try:
            self._setup(resume, resume_from)
        except BaseException:
            self._close(failed=True)
            raise

    def _setup(self, resume: bool, resume_from: str | int | None) -> None:
        config, tc, progress = self.config, self.config.train, self.progress
        if self.is_main:
            self._remove_leftovers()
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
        model = registry.build(
            config.model, config.data.resolution, seed=config.train.seed, dataset=config.data.name
        ).to(self.device)
        stage = getattr(model, "first_stage", None)  # latent diffusion: LDM's scale_by_std, measured once
        if stage is not None and latest_checkpoint(self.run_dir) is None:  # a resume loads its scale
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
        self.window: list[float] = []  # losses since the last log row (saved in checkpoints)
        if resume:
            self._resume(resume_from)
        self.latent_cache = self._latent_cache()
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
            "latent_cache": self.latent_cache.where if self.latent_cache else "off",
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
        if self.latent_cache is not None:
            line += f"; first-stage latents cached ({s['latent_cache']})"
        logger.info(line)
        if self.progress and self.is_main:
            tqdm.write(line, file=sys.stderr)

    def _latent_cache(self) -> LatentCache | None:
        """The cache of first-stage latents when ``model.first_stage.cache_latents`` is on."""
        settings = getattr(self.config.model, "first_stage", None)
        if settings is None or not settings.cache_latents:
            return None
        if self.config.train.compile:
            raise ValueError(
                "model.first_stage.cache_latents cannot be combined with train.compile: the compiled "
                "first stage may round differently from the eager one the cache runs; turn one off"
            )
        return LatentCache(self.unwrapped.first_stage, len(self.dataset), settings.cache_gib, self.device)

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

    def _remove_leftovers(self) -> None:
        """What killed writers left behind: temporary checkpoint folders, half-written files."""
        removed = remove_leftovers(self.run_dir) + remove_dead_temporaries(self.run_dir)
        if removed:
            names = ", ".join(p.name for p in removed)
            note = f"removed {len(removed)} leftover(s) of interrupted writes: {names}"
            logger.info(note)
            if self.progress:
                tqdm.write(f"{self.run_dir}: {note}", file=sys.stderr)

    def _resume(self, resume_from: str | int | None) -> None:
        """Load the newest checkpoint, or ``resume_from``; never silently an older one."""
        if resume_from is not None:
            name = str(resume_from) if str(resume_from).startswith("step_") else f"step_{resume_from}"
            path = self.run_dir / "checkpoints" / name
            if not path.is_dir():
                have = ", ".join(p.name for _, p in checkpoints(self.run_dir)) or "none"
                raise FileNotFoundError(
                    f"--resume-from {resume_from}: no checkpoint {path} (checkpoints: {have})"
                )
            self._load(path, load_checkpoint(path))
            if self.is_main:
                self._set_aside_after(self.step)
            return
        newest = latest_checkpoint(self.run_dir)
        if newest is None:
            return
        try:
            loaded = load_checkpoint(newest)
        except ValueError as err:
            valid, _ = newest_valid_checkpoint(self.run_dir)
            if valid is None:
                raise ValueError(
                    f"cannot resume {self.run_dir}: {err}; no checkpoint of the run loads, so start a new "
                    "one (another --out)"
                ) from None
            raise ValueError(
                f"cannot resume {self.run_dir}: {err}; the newest valid checkpoint is {valid.name}: continue "
                f"from it with --resume-from {valid.name} (later checkpoints are then moved to "
                "checkpoints/abandoned/)"
            ) from None
        self._load(newest, loaded)

    def _set_aside_after(self, step: int) -> None:
        """Move the checkpoints after ``step`` to ``checkpoints/abandoned/`` (kept, not deleted)."""
        later = [p for s, p in checkpoints(self.run_dir) if s > step]
        for path in later:
            target = path.parent / "abandoned" / path.name
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                target = target.with_name(f"{path.name}-{int(time.time())}")
            path.rename(target)
        if later and self.progress:
            tqdm.write(f"moved {', '.join(p.name for p in later)} to {self.run_dir}/checkpoints/abandoned/")

    def _load(self, path: Path, loaded: tuple[dict, dict]) -> None:
        tensors, state = loaded
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
        windows = state.get("log_window")
        self.window = list(windows[self.rank]) if windows and len(windows) == self.world else []

    def _log_windows(self) -> list[list[float]]:
        """Every process's losses since the last log row (every process must call this)."""
        if self.world == 1 or not self.window:
            return [list(self.window)]
        from accelerate.utils import gather

        values = gather(torch.tensor(self.window, dtype=torch.float64, device=self.device))
        return values.view(self.world, -1).tolist()

    def _close(self, failed: bool) -> None:
        """Release the run's lock; after a failure, remove a run directory this trainer created if
        it holds no checkpoint (nothing of value: a config and partial logs)."""
        if self.lock is None:
            return
        if failed and self.created and latest_checkpoint(self.run_dir) is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.lock.release()
        self.lock = None

    def save(self, loss: float | None) -> Path | None:
        """Checkpoint the current step (main process only; the others wait for it)."""
        windows = self._log_windows()
        if not self.is_main:
            self.accelerator.wait_for_everyone()
            return None
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer.state_dict())
        state = {
            "step": self.step,
            "seed": self.config.train.seed,
            "loss": loss,
            "train_seconds": self.train_seconds,
            "log_window": windows,  # so the first log row after a resume averages the same steps
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

    # -- side jobs (``training.side_jobs``) ------------------------------------------------------

    def _model_input_at(self, index) -> torch.Tensor:
        return self._to_input(self.images(index))

    def evaluate(self) -> dict:
        """The held-out loss (and token reliance) on the run's fixed evaluation batch."""
        tc = self.config.train
        x = self._model_input_at(batch_index(len(self.dataset), tc.eval_batch_size, tc.seed, 0, EVAL_STREAM))
        row = side_jobs.held_out_loss(self.unwrapped, x, step_seed(tc.seed, 0, EVAL_STREAM), self.autocast)
        return {"step": self.step, "train_seconds": self.train_seconds, **row}

    def ema_model(self) -> torch.nn.Module:
        return side_jobs.ema_copy(self.unwrapped, self.ema)

    def evaluate_metrics(self) -> dict:
        """The configured disentanglement metrics of the EMA model."""
        tc = self.config.train
        scores = side_jobs.disentanglement_scores(
            self.ema_model(), self.dataset, tc.metrics, tc.seed, tc.metrics_preset
        )
        return {"step": self.step, "train_seconds": self.train_seconds, **scores}

    def refit_anchors(self) -> dict:
        tc = self.config.train
        row = side_jobs.refit_anchors(
            self.unwrapped,
            self.ema,
            self._model_input_at,
            len(self.dataset),
            tc.seed,
            self.step,
            tc.eval_batch_size,
            self.progress and self.is_main,
        )
        return {"step": self.step, **row}

    # -- the loop -----------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Train to ``train.steps`` (or the time budget). On SIGTERM, SIGINT or SIGUSR1, checkpoint
        at the end of the current step and raise ``TrainingPreempted``; a non-finite loss raises
        ``NonFiniteLossError`` and writes no checkpoint. Releases the run's lock."""
        failed = True
        try:
            with StopRequests() as stop:
                result = self._train(stop)
            failed = False
            return result
        except TrainingPreempted:
            failed = False
            raise
        finally:
            self._close(failed)

    def _train(self, stop: StopRequests) -> TrainResult:
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
        loss_value, timed, tick = None, 0, time.perf_counter()  # timed: steps in the images/s window
        window_start = tick
        last_saved = latest_checkpoint(self.run_dir)
        if self.out_of_time():
            return TrainResult(self.run_dir, self.step, None, last_saved)
        try:
            for step, images in stream:
                index = stream.index(step) if self.latent_cache is not None else None
                loss_value = self._step(step, images, last_saved, index)
                self.step = step + 1
                self.window.append(loss_value)
                timed += 1
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
                        [sum(self.window) / len(self.window), *(float(v) for v in terms.values())]
                    )
                    if self.is_main:
                        row = {
                            "step": self.step,
                            "train_seconds": self.train_seconds,
                            "loss": loss_mean,
                            "lr": lr_at(step, self.config),
                            "images_per_s": timed * tc.batch_size / (side_jobs - window_start),
                            **dict(zip(terms, term_means, strict=True)),
                        }
                        if self.anchors is not None and self.anchors.last_lambda is not None:
                            row["anchoring_lambda"] = float(self.anchors.last_lambda)
                        log(row, "train_log.jsonl", "train/")
                        bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
                    self.window, timed, window_start = [], 0, side_jobs
                if self.is_main and (self.step % tc.eval_every == 0 or last):
                    log(self.evaluate(), "metrics.jsonl")
                if self.is_main and self._metrics_due():
                    log(self.evaluate_metrics(), "metrics.jsonl", "metrics/")
                saved = self.step % tc.checkpoint_every == 0 or last
                if saved:
                    last_saved = self.save(loss_value)
                if not last and (signal_name := self._agree_on_stop(stop)):
                    if not saved:
                        last_saved = self.save(loss_value)
                    if self.is_main:
                        bar.write(f"{signal_name}: checkpointed step {self.step} ({last_saved}); stopping")
                    raise TrainingPreempted(signal_name, self.step, last_saved)
                tick = time.perf_counter()
                window_start += tick - side_jobs
                if last:
                    break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return TrainResult(self.run_dir, self.step, loss_value, latest_checkpoint(self.run_dir))

    def _agree_on_stop(self, stop: StopRequests) -> str | None:
        """The stop signal's name if any process received one (all processes stop at the same step)."""
        if self.world == 1:
            return stop.signal_name
        from accelerate.utils import reduce

        flag = torch.tensor([float(stop.signal_name is not None)], device=self.device)
        if float(reduce(flag, "sum")) == 0:
            return None
        return stop.signal_name or "a stop signal (on another process)"

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

    def _step(self, step: int, images, last_saved: Path | None, index=None) -> float:
        """One optimisation step on batch ``step`` (dataset items ``index``, which the latent
        cache needs); returns its loss."""
        tc = self.config.train
        x = self._to_input(images)
        _set_lr(self.optimizer, step, self.config)
        torch.manual_seed(step_seed(tc.seed, step, NOISE_STREAM, self.rank))  # dropout and other global draws
        # timesteps and noise: drawn for the global batch from one seed, this process's rows kept
        draws = StepDraws.seeded(
            step_seed(tc.seed, step, NOISE_STREAM), self.local_batch_size, self.device, self.rank, self.world
        )
        with self.autocast():  # a cached latent is encoded under the same autocast as a fresh one
            if self.latent_cache is None:
                loss = self.model(x, draws=draws)
            else:
                loss = self.model(x, draws=draws, latents=self.latent_cache(index, x))
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
