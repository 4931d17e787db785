"""The ``atacformer`` command line: a thin shell over the library's ``pp``/``tl``/``pl``.

One module per command (``tokenize``, ``embed``, ``annotate``, ...), as in transformers'
``commands/``: each adds its parser (``add_parser``) and runs it (``run``), checking every
numeric option before anything heavy is imported. :func:`main` turns the project's own
errors (:class:`~atacformer.AtacformerError` and its subclasses, such as a missing file, a
malformed input, a model that cannot be found, or :class:`CommandLineError`) and any
``OSError`` (a full disk, a file it may not read) into one line on stderr and exit status
1; anything else is a bug and keeps its traceback. Set ``ATACFORMER_DEBUG=1`` to see
tracebacks for user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .._core import AtacformerError
from . import annotate, demo, embed, info, tokenize
from ._common import CommandLineError, one_line, warnings_as_lines

__all__ = ["CommandLineError", "build_parser", "main"]

COMMANDS = (tokenize, embed, annotate, info, demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``atacformer`` argument parser with its commands."""
    parser = argparse.ArgumentParser(
        prog="atacformer",
        description="Tokenize single-cell ATAC-seq data and embed cells with Atacformer.",
        epilog="Start with `atacformer demo`: it runs offline in under a minute.\n"
        "Set ATACFORMER_DEBUG=1 to see tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"atacformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings_as_lines(args.command):
            return int(args.func(args))
    except (AtacformerError, OSError) as e:  # OSError: the machine's word (disk, rights)
        if os.environ.get("ATACFORMER_DEBUG"):
            raise
        print(f"atacformer {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("atacformer: interrupted", file=sys.stderr)
        return 130
