"""What the trainer does between steps, apart from checkpoints: the held-out loss and token
reliance, disentanglement metrics of the EMA model, and DyGA's anchor refits.

``SideJobs`` is mixed into ``Trainer``; it reads the trainer's config, model, EMA, image source and
clock, and returns one log row per job (the trainer decides when each is due and writes the row).
"""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from diffdrl.training.batches import ANCHOR_STREAM, EVAL_STREAM, batch_index, step_rng, step_seed


class SideJobs:
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Loss on a fixed batch with fixed noise, and (for token-conditioned models) with tokens
        shuffled across the batch."""
        tc = self.config.train
        x = self._to_input(
            self.images(batch_index(len(self.dataset), tc.eval_batch_size, tc.seed, 0, EVAL_STREAM))
        )
        model = self.unwrapped
        model.eval()
        losses = {}
        for shuffle in (False, True) if getattr(model, "conditions_on_tokens", False) else (False,):
            gen = torch.Generator(self.device).manual_seed(step_seed(tc.seed, 0, EVAL_STREAM))
            with self.autocast():
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
            x = self._to_input(self.images(index[i : i + tc.eval_batch_size]))
            tokens.append(model.raw_tokens(model.units(x)).float())
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
