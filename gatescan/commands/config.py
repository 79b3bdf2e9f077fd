"""`gatescan config check FILE`: every problem of a gate's config file at once, as the gate would
find them (the loader's messages: file, key path, "did you mean"); exit 0 when it loads, 2 when
not. It reads the MQTT password's home (environment, systemd credential, password_file) as the
gate would, and says when the file names no broker (the gate then enrols: setup mode).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatescan.options import EXIT_BAD_INPUT, EXIT_OK, Commands


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="check a gate's config file")
    actions = config.add_subparsers(title="actions", metavar="ACTION")
    check = actions.add_parser("check", help="list every problem of a gate config file")
    check.add_argument("file", type=Path, help="gate config file (.toml, .yaml)")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from firmware_config.errors import ConfigError
    from firmware_config.loader import load_config

    try:
        config = load_config(args.file)
    except ConfigError as error:
        count = len(error.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.file}: ok")
    if config.mqtt.broker is None:
        print(
            "  no mqtt.broker: the gate runs as its enrolled identity, or waits in setup mode "
            "for its enrolment card"
        )
    return EXIT_OK
