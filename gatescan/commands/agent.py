"""`gatescan agent`: run a gate (camera, decoder, indicator, journal, uplink) from its config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatescan.options import EXIT_BAD_INPUT, EXIT_FAILED, Commands, stop_on_signals


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    agent = commands.add_parser("agent", help="run a gate: camera, decoder, indicator, uplink")
    agent.add_argument("--config", type=Path, help="gate config file (.toml, .yaml)")
    agent.add_argument(
        "--source",
        help="picamera2 | /dev/video0 | 0 | rtsp://... | FILE | replay:DIR (overrides the config)",
    )
    agent.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    agent.add_argument("--device-id", help="this gate's id (a topic level and broker user)")
    agent.add_argument("--data-dir", type=Path, help="where the journal lives")
    agent.set_defaults(run=run)


def startup_errors() -> tuple[type[BaseException], ...]:
    """What can stop a gate from starting: hardware, files, libraries. Each says what is wrong."""
    from gpiozero import GPIOZeroError

    from device.camera.source import CameraError
    from device.decode.base import DecoderError
    from device.journal.journal import JournalError

    return (CameraError, JournalError, DecoderError, GPIOZeroError, OSError)


def run(args: argparse.Namespace) -> int:
    from device.app import build_agent
    from firmware_config.errors import ConfigError
    from firmware_config.loader import ConfigOverrides, load_config

    overrides = ConfigOverrides(
        source=args.source, broker=args.broker, device_id=args.device_id, data_dir=args.data_dir
    )
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"gatescan agent: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        agent = build_agent(config)
    except ValueError as exc:  # a fault-injection variable mistyped (it names itself)
        print(f"gatescan agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except startup_errors() as exc:
        # systemd restarts the unit; the technician reads one line, not a traceback.
        print(f"gatescan agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    agent.run(stop_on_signals())
    return 0
