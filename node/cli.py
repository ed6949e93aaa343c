"""The `fedchain` command line: a thin dispatcher over node/commands/*.

Each subcommand lives in its own module exposing `HELP: str`, `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so `fedchain --help`
stays fast and one broken command cannot take the others down.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol, cast

# name -> module under node.commands; add a line here to add a command.
COMMANDS: dict[str, str] = {
    "init": "init",
    "genesis": "genesis",
    "start": "start",
    "testnet": "testnet",
    "status": "status",
    "keys": "keys",
    "tx": "tx",
    "client": "client",
    "demo": "demo",
    "eval": "eval",
    "sim": "sim",
    "gov": "gov",
    "stake": "stake",
    "committee": "committee",
}


class CommandModule(Protocol):
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> CommandModule:
    return cast(CommandModule, importlib.import_module(f"node.commands.{COMMANDS[name]}"))


def fedchain_version() -> str:
    try:
        return version("fedchain")
    except PackageNotFoundError:  # run from a source tree without an install
        return "unknown"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedchain", description="Federated learning on a BFT chain."
    )
    parser.add_argument("--version", action="version", version=f"fedchain {fedchain_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(COMMANDS):
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        module = _load(name)
        command_parser = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        build_parser().print_help()
        return 0
    chosen = argv[0] if argv[0] in COMMANDS else None
    # Anything else (--help, --version, a typo) goes to the full parser, which prints help,
    # the version, or "invalid choice" with the list of commands and exit status 2.
    args = build_parser(only=chosen).parse_args(argv)
    if chosen is None:  # e.g. only options that do not exit: show what can be run
        build_parser().print_help()
        return 2
    return _load(chosen).run(args)


if __name__ == "__main__":
    raise SystemExit(main())
