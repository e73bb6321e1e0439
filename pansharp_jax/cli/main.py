"""The ``pansharp`` entry point: a thin parser over one module per command.

Commands: ``fuse`` (:mod:`~pansharp_jax.cli.fuse`), ``eval``, ``compare``, ``train``,
``demo``, ``simulate`` (training sets from your own scenes), ``analyze`` (frequency
analysis), ``sample`` (mean and std of a generative method's draws), ``video-train`` /
``video-sample`` (APLA, module ``video``) and ``restore`` (QWSNM colour restoration). A new
command is a module with ``add_parser(sub, parents)`` listed in :data:`COMMANDS`.

Errors: bad input (:class:`~pansharp_jax.errors.InputError`) and command-line mistakes
print ONE line on stderr, ``pansharp: error: ...``, and give exit code 2. Any other
exception prints ``pansharp: internal error: <Type>: <msg> (rerun with --debug for the
traceback)`` and gives exit code 1; ``--debug`` re-raises it instead. :func:`main`
RETURNS the exit code and never raises ``SystemExit`` (``--help`` and ``--version``
return 0); the console script passes it to ``sys.exit``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pansharp_jax import __version__
from pansharp_jax.cli._common import Parser, UsageError, one_line
from pansharp_jax.errors import InputError
from pansharp_jax.runtime import configure_entry_point

# One module per command, each with add_parser(sub, parents); in --help order.
COMMANDS = ("fuse", "eval", "compare", "train", "demo", "simulate", "analyze", "sample", "video", "restore")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``pansharp`` (one sub-command per module of :data:`COMMANDS`)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of internal errors")
    parser = Parser(prog="pansharp", description="Pan-sharpening with JAX: fuse, evaluate and compare methods.")
    parser.add_argument("--version", action="version", version=f"pansharp {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the traceback of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"pansharp_jax.cli.{name}").add_parser(sub, [debug])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 internal error, 2 bad input or usage).

    Never raises ``SystemExit``; with ``--debug`` an internal error is re-raised.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    overrides = [a for a in argv if a.startswith("--config.")]  # train's --config.KEY=VALUE
    try:
        args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
        if overrides and args.command != "train":
            raise UsageError(f"unrecognized arguments: {' '.join(overrides)} (config overrides are for 'pansharp train')")
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    except UsageError as e:
        print(f"pansharp: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    args.overrides = overrides
    configure_entry_point()  # XLA flags and the compilation cache, before the first JAX computation
    if getattr(args, "command", None) == "demo" and args.seed is None:
        from pansharp_jax.data.demo import DEMO_SEED

        args.seed = DEMO_SEED
    try:
        return int(args.func(args))
    except InputError as e:
        print(f"pansharp: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # training saved a checkpoint first and said how to resume
        print("pansharp: interrupted", file=sys.stderr)
        return int(getattr(e, "exit_code", 130))
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if debug or getattr(args, "debug", False):
            raise
        print(
            f"pansharp: internal error: {type(e).__name__}: {one_line(str(e))} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
