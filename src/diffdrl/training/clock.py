"""The training clock: seconds spent in training steps, side jobs (anchor refits, evaluations,
checkpoints) left out, and the throughput of the steps since the last log row.

The trainer sums the steps' seconds into ``train_seconds``, which decides the time budget
(``train.time_budget_minutes``) and is saved in every checkpoint.
"""

from __future__ import annotations

import time


class StepClock:
    """Call ``end_step`` after each step's training and ``end_side_jobs`` once its side jobs are
    done; what lies between the two is not training time."""

    def __init__(self):
        self.step_started = time.perf_counter()
        self.steps_ended = self.step_started  # when the last step's training ended
        self.window_started = self.step_started  # start of the throughput window, side jobs excluded
        self.window_steps = 0  # steps in the throughput window

    def end_step(self) -> float:
        """The seconds of the step's training."""
        self.steps_ended = time.perf_counter()
        self.window_steps += 1
        return self.steps_ended - self.step_started

    def end_side_jobs(self) -> None:
        self.step_started = time.perf_counter()
        self.window_started += self.step_started - self.steps_ended

    def images_per_s(self, batch_size: int) -> float:
        """Training throughput of the steps in the window (global batch of ``batch_size``)."""
        return self.window_steps * batch_size / (self.steps_ended - self.window_started)

    def new_window(self) -> None:
        """Start the next throughput window (after a log row)."""
        self.window_steps, self.window_started = 0, self.steps_ended
