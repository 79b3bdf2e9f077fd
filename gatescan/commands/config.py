"""`gatescan config check FILE`: every problem of a gate's config file at once, as the gate would
find them (the loader's messages: file, key path, "did you mean"); exit 0 when it loads, 2 when
not. It reads the MQTT password's home (environment, systemd credential, password_file) as the
gate would, and says when the file names no broker (the gate then enrols: setup mode). A gate in
access mode whose data dir holds no site key and no allow list (or no site policy yet) would
refuse every code: that is a problem too (exit 2), said in those words.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.options import EXIT_BAD_INPUT, EXIT_OK, Commands

if TYPE_CHECKING:
    from firmware_config.schema import GateConfig


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
    refusal = access_problem_of(config)
    if refusal is not None:
        # Not a file's typo, but the gate would open for nobody: said as a problem (exit 2).
        print(f"{args.file}: 1 problem", file=sys.stderr)
        print(f"  policy.mode: {refusal}", file=sys.stderr)
        print(
            "  (the site's keys and lists come from the server: `gatescan key rotate` and "
            '`gatescan list add allow` there; or run this gate with policy.mode = "log")',
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"{args.file}: ok")
    if config.mqtt.broker is None:
        print(
            "  no mqtt.broker: the gate runs as its enrolled identity, or waits in setup mode "
            "for its enrolment card"
        )
    return EXIT_OK


def access_problem_of(config: GateConfig) -> str | None:
    """Access mode that refuses every code, as the site policy held in the data dir says (read
    only: nothing is written)."""
    from device.site_policy.files import load_policy, policy_folder
    from device.site_policy.held import EMPTY_POLICY
    from device.verdict.policy import access_problem

    if config.policy.mode != "access":
        return None
    held = (
        load_policy(policy_folder(Path(config.data_dir), config.site_id), config.site_id)
        if config.site_id
        else EMPTY_POLICY
    )
    return access_problem(config.policy.mode, held)
