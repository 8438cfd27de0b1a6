"""The command line's validation layer: argument types that check counts and paths where they are
parsed, so every command refuses ``--num 0`` or a missing file the same way, before any work, and
a parser whose usage errors are one line with a pointer to ``--help``.

Each type raises ``argparse.ArgumentTypeError``; the parser turns it into
``diffdrl <command>: error: argument --num: must be an integer >= 1, got '0' (see diffdrl <command> --help)``
and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (the house rule), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def at_least(low: int):
    """An integer argument type that is ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


count = at_least(1)  # how many images, pairs, values, samples: at least one
seed = at_least(0)  # numpy seeds are non-negative


def port(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    value = at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in [1, 65535], got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def run_dir(text: str) -> Path:
    """A run directory (one holding ``config.yaml``)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a diffdrl run directory (no such folder)")
    if not (path / "config.yaml").is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a diffdrl run directory (no config.yaml)")
    return path


def output_file(text: str) -> Path:
    """A file to write: not an existing directory, and not inside an existing file."""
    path = Path(text).expanduser()
    if text.endswith(("/", "\\")) or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"cannot write {text}: {parent} is a file, not a folder")
            break
    return path


def comma_ints(low: int):
    """Comma-separated integers, each ``>= low`` (``--units 0,3,5``, ``--timesteps 100,500``)."""

    def parse(text: str) -> tuple[int, ...]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            values = tuple(int(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None
        if not values or min(values) < low:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers >= {low}, got {text!r}")
        return values

    parse.__name__ = "integers"
    return parse


def print_error(message: str) -> None:
    """One line on stderr: what went wrong, with the file or argument it concerns."""
    print(f"diffdrl: error: {' '.join(str(message).split())}", file=sys.stderr)
