"""What the training processes agree on (``accelerate launch``, one process per GPU): the logged
means, the stop step and the clock. Every process must make the same calls in the same order; with
one process each is the identity and nothing is communicated.
"""

from __future__ import annotations

import torch


class Processes:
    """The ``world`` training processes, seen from process ``rank`` on ``device``."""

    def __init__(self, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device

    def mean(self, values: list[float]) -> list[float]:
        """The mean of each value over the processes, so that the logged loss is the global
        batch's; a single process gets its values back unchanged."""
        if self.world == 1:
            return values
        from accelerate.utils import reduce

        return reduce(torch.tensor(values, dtype=torch.float64, device=self.device), "mean").tolist()

    def stop_signal(self, signal_name: str | None) -> str | None:
        """The stop signal's name if any process received one (all processes stop at the same step)."""
        if self.world == 1:
            return signal_name
        from accelerate.utils import reduce

        flag = torch.tensor([float(signal_name is not None)], device=self.device)
        if float(reduce(flag, "sum")) == 0:
            return None
        return signal_name or "a stop signal (on another process)"

    def main_clock(self, seconds: float) -> float:
        """The main process's training seconds, so that every process stops at the same step."""
        if self.world == 1:
            return seconds
        from accelerate.utils import broadcast

        clock = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        return float(broadcast(clock, from_process=0))

    def gather(self, window: list[float]) -> list[list[float]]:
        """Every process's list of losses since the last log row (saved in checkpoints)."""
        if self.world == 1 or not window:
            return [list(window)]
        from accelerate.utils import gather

        values = gather(torch.tensor(window, dtype=torch.float64, device=self.device))
        return values.view(self.world, -1).tolist()
