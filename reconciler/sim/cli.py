"""``reconciler sim ...`` arguments. Kept light: the server is imported only when it runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser("serve", help="run the simulator in the foreground")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("the simulator is being built")
