"""The ``codecave`` command: parse arguments, call the library, print results.

Errors of codecave's own types are printed as one line without a traceback and
set a non-zero exit code (2 for bad input, 130 for Ctrl-C, 141 when the reader of
the output went away, as in ``codecave probe X --json | head``).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
from collections.abc import Sequence

from codecave import __version__
from codecave.cli import demo, enhance, evaluate, prepare, probe, train, wrap
from codecave.errors import CodecaveError

COMMANDS = {"probe": probe, "prepare": prepare, "train": train, "evaluate": evaluate, "enhance": enhance, "wrap": wrap,
            "demo": demo}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per module in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="codecave", description="Codec-aware video enhancement.")
    parser.add_argument("--version", action="version", version=f"codecave {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone away (a pipe whose other end is closed)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("codecave: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a worker's): not ours to hide
        # The reader of stdout closed it (| head): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (CodecaveError, FileNotFoundError) as exc:
        print(f"codecave {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
