"""The ``imod`` command: a thin root that registers each package's own command.

Each package owns its command in its ``cli`` module, which exposes
``add_parser(subparsers, name, help=...)``: :mod:`imod.bench.cli` (``imod bench``,
``imod list``) and :mod:`imod.memorization.cli` (``imod memorize``). Only the module of the
command being run is imported, so ``imod --help`` loads no torch, scikit-learn or pandas.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command -> (module that owns it, one-line help shown by ``imod --help``).
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("imod.bench.cli", "run the ADBench protocol on detectors"),
    "list": ("imod.bench.cli", "list local and upstream ADBench datasets"),
    "memorize": ("imod.memorization.cli",
                 "memorization / influence scores (Feldman & Zhang + the critique's fixes)"),
}


def _unavailable(name: str, why: str):
    def run(args: argparse.Namespace) -> int:
        print(f"imod {name}: error: this command cannot be loaded: {why}", file=sys.stderr)
        return 1

    return run


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``imod`` parser; the commands in ``commands`` (default: all) get their full options.

    Examples
    --------
    >>> build_parser().parse_args(["bench", "--seeds", "2"]).seeds
    ['2']
    >>> sorted(build_parser(commands=[])._subparsers._group_actions[0].choices)
    ['bench', 'list', 'memorize']
    """
    load = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="imod",
        description="Outlier detection from the inlier-memorization effect: benchmark and "
                    "memorization tools. Run 'imod COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_line) in COMMANDS.items():
        if name not in load:  # listed for --help; its module is imported when it runs
            sub.add_parser(name, help=help_line, add_help=False)
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            p = sub.add_parser(name, help=help_line)
            p.set_defaults(func=_unavailable(name, str(exc)), _parser=p)
            continue
        mod.add_parser(sub, name, help=help_line)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imod`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([command] if command in COMMANDS else [])
    args, extra = parser.parse_known_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help()
        return 2
    if extra:  # the command's own usage, not the root's
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result = func(args)
    except BrokenPipeError:  # e.g. `imod list | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
