"""The ``castsearch`` command line. ``main(argv) -> int``; libraries log, this package prints.

- :mod:`~search.cli.parser`: ``build_parser``, every command and flag with its help.
- :mod:`~search.cli.commands`: one ``cmd_<name>(args)`` per command.
- :mod:`~search.cli.printing`: what the commands print (the live epoch line, the front, ...).
- :mod:`~search.cli.common`: the one-line error, the study a command reads, formats.
- :mod:`~search.cli.reference`: ``docs/cli.md``, generated from the parser.

Heavy imports (torch, composer, ray) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import logging
import os
import sys

from search.cli.common import CLIError, stdout_closed
from search.cli.parser import build_parser
from search.cli.printing import live_epoch_line, print_front, print_run_summary

__all__ = ["CLIError", "build_parser", "live_epoch_line", "main", "print_front", "print_run_summary"]


def __getattr__(name: str):
    """``load_sizes`` lives in :mod:`search.data` (which imports torch): importers that took it from
    here still get it, without the CLI importing torch for ``--help``."""
    if name == "load_sizes":
        from search.data import load_sizes

        return load_sizes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("composer", "optuna", "ray", "torch", "onnxscript", "onnx_ir", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that went away (``| head``) shows here, not at exit
        return status
    except BrokenPipeError:
        return stdout_closed()
    except KeyboardInterrupt:
        print("castsearch: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        # Bad input: a one-line message, no traceback (CASTSEARCH_DEBUG=1 shows it).
        if os.environ.get("CASTSEARCH_DEBUG"):
            raise
        print(f"castsearch: error: {e}", file=sys.stderr)
        return 2
