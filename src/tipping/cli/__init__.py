"""`tipping <command>` (also `python -m tipping <command>`): every step of the pipeline.

One module per verb (run, compare, items, model, align, evolve, analysis, population, export, plan)
declares its commands' arguments next to their handlers; a handler imports the domain code it
calls inside its body (so --help stays fast, and tipping.codehash can hash each command's own
code). Input errors print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from tipping.cli import (
    align,
    analysis,
    compare,
    evolve,
    export,
    items,
    model,
    plan,
    population,
    run,
)
from tipping.cli.options import Parser
from tipping.errors import InputError


def build_parser() -> Parser:
    parser = Parser(prog="tipping", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for verb in (run, compare, items, model, align, evolve, analysis, population, export, plan):
        verb.add(sub)
    return parser


@functools.cache
def _parser() -> Parser:
    return build_parser()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """A `tipping` command line as its command reads it: the leakage audit and `tipping plan` read
    the DAG's jobs with it (passed in, so that they stay below the CLI)."""
    return _parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads stall 2-core hosts
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args) or 0
    except InputError as exc:
        print(f"tipping: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tipping: interrupted", file=sys.stderr)
        return 130
