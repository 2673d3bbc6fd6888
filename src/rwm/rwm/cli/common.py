"""What the command groups share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def device_option(parser, help: str) -> None:
    """`--device cpu|cuda` (`rwm.training.distributed.DEVICES`, not imported here: the CLI loads torch only
    in the command that runs)."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help=help)


def invocation() -> str:
    """The command as typed, for the metadata of what it makes (models record how they were made)."""
    return "rwm " + " ".join(sys.argv[1:])


def bag_directories(paths: list[str]) -> list[Path]:
    """Bags named directly (directories with metadata.yaml) or found one level inside the directories
    given (a replay buffer)."""
    found = []
    for given in map(Path, paths):
        found += [given] if (given / "metadata.yaml").is_file() else list(given.glob("*/"))
    return sorted(p for p in found if (p / "metadata.yaml").is_file())


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
