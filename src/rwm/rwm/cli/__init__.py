"""`rwm` command line, one module per command group: data, policies, world models."""

from __future__ import annotations

import argparse
import sys

from rwm.cli import data, policy, world_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwm", description="Robotic World Model tools for ANYmal D")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (data, policy, world_model):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
