"""`rwm` command line, one module per command group: data, policies, world models."""

from __future__ import annotations

import argparse
import os
import sys

from rwm.cli import data, policy, world_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwm", description="Robotic World Model tools for ANYmal D")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (data, policy, world_model):
        group.register(sub)
    return parser


DATA_PARALLEL = ("train-wm", "train-ppo", "train-mbpo")
"""The commands `torchrun` may start in several processes: they train data-parallel. Any other would
run W copies of the whole job, writing the same files."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in DATA_PARALLEL:
        raise SystemExit(
            f"rwm {args.command} runs in one process; torchrun trains {', '.join(DATA_PARALLEL)}"
        )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
