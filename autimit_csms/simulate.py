"""`autimit-csms simulate`: placeholder while the simulator is being written (issue 10)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("autimit-csms simulate: not available yet", file=sys.stderr)
    return 2
