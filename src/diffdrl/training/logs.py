"""Where the training loop reports: the run's JSONL logs and TensorBoard (main process only) and
the progress bar."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from diffdrl.training.run_dir import append_jsonl


class TrainLogs:
    """Rows go to ``RUN/<file>`` (one JSON object per line) and their numbers to TensorBoard under
    ``<prefix><key>`` at the row's step; a context manager that closes both."""

    def __init__(self, run_dir: Path, step: int, steps: int, is_main: bool, progress: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=step) if is_main else None
        self.bar = tqdm(
            total=steps, initial=step, disable=not (progress and is_main), desc="train", dynamic_ncols=True
        )

    def row(self, row: dict, file: str, prefix: str = "") -> None:
        append_jsonl(self.run_dir / file, row)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(prefix + key, value, row["step"])

    def write(self, line: str) -> None:
        """A line above the progress bar."""
        self.bar.write(line)

    def __enter__(self) -> TrainLogs:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
