"""The per-sample random draws of one training step, in plain sight.

A loss that draws timesteps and noise per sample asks a ``StepDraws`` for them instead of calling
``torch.randn`` itself. With one process that is the same as drawing from the generator directly.
With P processes (each holding ``local`` rows of a global batch of ``local * world``), every process
seeds the same generator, draws the rows of the whole global batch and keeps its own contiguous
slice, so P processes train on exactly the timesteps and noise one process would (as EDM hands its
loss a per-sample generator). Anything that is not one row per sample (a shared permutation, a coin
per unit) is drawn from ``generator`` directly and is the same on every process.
"""

from __future__ import annotations

import torch


class StepDraws:
    """Random rows for process ``rank``'s slice of a global batch of ``local * world`` samples."""

    def __init__(
        self, generator: torch.Generator | None, local: int, rank: int = 0, world: int = 1, device=None
    ) -> None:
        if local < 1 or world < 1 or not 0 <= rank < world:
            raise ValueError(
                f"need local >= 1 and 0 <= rank < world, got local={local} rank={rank} world={world}"
            )
        self.generator, self.local, self.rank, self.world = generator, local, rank, world
        # draws land on the generator's device (the global RNG's: ``device``, default CPU)
        self.device = generator.device if generator is not None else device

    @classmethod
    def seeded(cls, seed: int, local: int, device="cpu", rank: int = 0, world: int = 1) -> StepDraws:
        return cls(torch.Generator(device).manual_seed(seed), local, rank, world)

    def _local_rows(self, drawn: torch.Tensor) -> torch.Tensor:
        """This process's contiguous slice of rows drawn for the global batch."""
        return drawn[self.rank * self.local : (self.rank + 1) * self.local]

    def _size(self, tail: tuple[int, ...]) -> tuple[int, ...]:
        return (self.local * self.world, *tail)

    def normal(self, *tail: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, 1) of shape (local, *tail)."""
        return self._local_rows(
            torch.randn(self._size(tail), generator=self.generator, device=self.device, dtype=dtype)
        )

    def uniform(self, *tail: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """U[0, 1) of shape (local, *tail)."""
        return self._local_rows(
            torch.rand(self._size(tail), generator=self.generator, device=self.device, dtype=dtype)
        )

    def integers(self, low: int, high: int, *tail: int) -> torch.Tensor:
        """Integers uniform in [low, high) of shape (local, *tail)."""
        drawn = torch.randint(low, high, self._size(tail), generator=self.generator, device=self.device)
        return self._local_rows(drawn)


def step_draws(draws: StepDraws | None, batch: int, device=None) -> StepDraws:
    """``draws``, checked against the batch it is for, or fresh ones from the global RNG on ``device``."""
    if draws is None:
        return StepDraws(None, batch, device=device)
    if draws.local != batch:
        raise ValueError(f"the step's draws are for a batch of {draws.local}, the batch has {batch}")
    return draws
