"""Preemption: SIGTERM, SIGINT or SIGUSR1 (what SLURM, Kubernetes and cloud spot instances send
before killing a job) ask training to stop at the next step boundary, after writing a checkpoint.

The handlers only record the request; the trainer checks it between steps, so the signal never
interrupts a step or a checkpoint write. A second SIGINT (Ctrl-C twice) stops at once with
``KeyboardInterrupt``. The command line exits with ``PREEMPTED_EXIT`` (75, EX_TEMPFAIL: "try
again later") after a preemption, so a job script can tell it from success and from failure and
requeue with ``--resume``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

PREEMPTED_EXIT = 75
STOP_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGINT", "SIGUSR1")) if s is not None
)


class TrainingPreempted(BaseException):
    """Training stopped on a signal after checkpointing ``step``; resume to continue exactly.

    A ``BaseException`` (like ``KeyboardInterrupt``), so code that records ordinary failures (a
    sweep's cells) lets it through instead of marking the work failed."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(
            f"stopped by {signal_name} at step {step}; checkpoint {checkpoint}; continue with --resume"
        )


class StopRequests:
    """Within ``with``: the stop signals set ``signal_name`` instead of killing the process. Off the
    main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
