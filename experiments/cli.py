"""The ``mixmim-bench`` command line."""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixmim-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="registered backbones with parameters and FLOPs")
    models.add_argument("names", nargs="*", help="backbones to show (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "models":
        from experiments.models_table import print_models

        print_models(args.names or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
