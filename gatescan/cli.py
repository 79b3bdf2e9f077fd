"""The `gatescan` command: one entry point, a subcommand per process or task.

Each command lives in gatescan/commands/ (its flags and what it runs); what commands share (exit
codes, the database and broker options, signals) is in gatescan/options.py. The processes
themselves are wired elsewhere: a gate by device/app.py's `build_agent`, the server side by
server/app.py's `build_server`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gatescan.commands import (
    accounts,
    agent,
    collector,
    config,
    decode,
    demo,
    entries,
    gates,
    journal,
    lists,
    passes,
    provision,
    server,
    site,
)
from gatescan.options import EXIT_BAD_INPUT, EXIT_FAILED, ConfigFileError, with_config_file


def main(argv: Sequence[str] | None = None) -> int:
    # First, before any of those packages is imported: a clash is then one clear line.
    clashes = foreign_packages()
    if clashes:
        print("gatescan: " + "; ".join(clashes), file=sys.stderr)
        return EXIT_FAILED
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command_parser", None) is not None and args.config is not None:
        try:
            args = with_config_file(parser, argv, args)
        except ConfigFileError as exc:
            print(f"gatescan: --config {args.config}:\n{exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    level = args.log_level or getattr(args, "default_log_level", "info")
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    return int(args.run(args))


def build_parser() -> argparse.ArgumentParser:
    from protocol.release import __version__

    parser = argparse.ArgumentParser(prog="gatescan", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"gatescan {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: info (warning for the demo, whose screen shows what happens)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in (
        agent,
        config,
        collector,
        server,
        site,
        gates,
        passes,
        lists,
        provision,
        decode,
        entries,
        journal,
        accounts,
        demo,
    ):
        command.add_parser(commands)
    return parser


# gatescan's packages keep their short top-level names (docs/architecture.md says why).
OWN_PACKAGES = ("protocol", "firmware_config", "device", "server")


def foreign_packages() -> list[str]:
    """Each of our top-level packages that is not ours: a folder of that name that comes first on
    the path, or another installed distribution that provides the same name. Empty when all is
    well (the usual case: one virtualenv per gate or server)."""
    home = Path(__file__).resolve().parent.parent
    providers = importlib.metadata.packages_distributions()
    problems = []
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if found is None or found.parent.parent != home:
            problems.append(
                f"the package '{name}' it imports is {found or 'missing'}, not its own in {home}"
                " (run gatescan from its own virtualenv, not beside a folder of that name)"
            )
        others = sorted(set(providers.get(name, ())) - {"gatescan"})
        if others:
            problems.append(f"'{name}' is also installed by {', '.join(others)}: use a venv")
    return problems


if __name__ == "__main__":
    sys.exit(main())
