"""What the `gatescan` commands share: exit codes, the database and broker options, how the
collector logs in to the broker, its per-gate limits, and the stop event that SIGINT and
SIGTERM set.

Modules here import nothing heavy at import time (`gatescan --help` stays quick): the server's
and the gate's packages are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import CollectorLogin

# Exit codes, the same for every command.
EXIT_OK = 0
EXIT_FAILED = 1  # could not start, or failed while running (the message says why)
EXIT_BAD_INPUT = 2  # a configuration, an argument or a file to fix (the message says which)
EXIT_NO_SUCH = 3  # no such user or token

DEFAULT_DB = "sqlite:///gatescan.db"
DEFAULT_BROKER = "mqtt://localhost:1883"
DEFAULT_CLIENT_ID = "gatescan-collector"
DEFAULT_COLLECTOR_USER = "collector"
# server.collector.service.MqttClient's values, the default first (not imported: the parser is
# built without the server's imports; tests/gatescan/test_options.py checks they agree).
MQTT_CLIENTS = ("tuned", "stock")
# server.collector.limits' defaults, for --help (not imported, for the same reason; the same
# test checks they agree).
DEFAULT_GATE_MAX_MESSAGES_PER_SECOND = 1000.0
DEFAULT_GATE_MAX_BYTES_PER_MINUTE = 32 * 1024 * 1024

Commands = argparse._SubParsersAction  # argparse's type for add_subparsers()


def add_db_option(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """--db, as every command on the collector's database takes it."""
    parser.add_argument(
        "--db",
        required=required,
        default=None if required else DEFAULT_DB,
        help="SQLAlchemy URL or a SQLite file path"
        + ("" if required else " (default: %(default)s)"),
    )


def missing_sqlite_file(db: str) -> Path | None:
    """A SQLite database named by a URL or path that does not exist (a typo, not a new site)."""
    if "://" in db and not db.startswith("sqlite:///"):
        return None
    path = Path(db.removeprefix("sqlite:///")) if db.startswith("sqlite:///") else Path(db)
    return None if str(path) in ("", ":memory:") or path.exists() else path


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """How the collector reaches the broker: --broker, --client-id, --username."""
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="default: %(default)s")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="default: %(default)s")
    parser.add_argument(
        "--username",
        default=DEFAULT_COLLECTOR_USER,
        help="broker user, the ACL's `user collector` (default: collector; '' logs in"
        " anonymously); the password comes from $GATESCAN_MQTT_PASSWORD or the systemd"
        " credential mqtt_password",
    )
    parser.add_argument(
        "--mqtt-client",
        choices=MQTT_CLIENTS,
        default=MQTT_CLIENTS[0],
        help="tuned: paho with a faster read path and batched PUBACKs (the default); stock:"
        " paho's public API only (docs/architecture.md, 'The collector's MQTT client')",
    )


def _limit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number, 0 (no limit) or more, not {text!r}")
    return value


def add_gate_limit_options(parser: argparse.ArgumentParser) -> None:
    """Each gate's limits at the collector (server/collector/limits.py; docs/architecture.md,
    "Per-gate limits"): a message over either is dropped unread and PUBACKed, and its gate
    resends it."""
    parser.add_argument(
        "--gate-max-messages-per-second",
        type=_limit,
        default=DEFAULT_GATE_MAX_MESSAGES_PER_SECOND,
        metavar="N",
        help="messages a gate may send per second, with 10 s of them at once"
        " (default: %(default).0f; 0: no limit)",
    )
    parser.add_argument(
        "--gate-max-bytes-per-minute",
        type=_limit,
        default=DEFAULT_GATE_MAX_BYTES_PER_MINUTE,
        metavar="BYTES",
        help="payload bytes a gate may send per minute, with 10 s of them at once"
        " (default: %(default).0f, 32 MiB; 0: no limit)",
    )


class MqttLoginError(ValueError):
    """A broker URL or a password file a technician must fix (the message says which)."""


def collector_login(args: argparse.Namespace) -> CollectorLogin:
    """The collector's login from the broker options: the URL checked, the MQTT password from
    $GATESCAN_MQTT_PASSWORD or the systemd credential `mqtt_password`. Raises MqttLoginError
    with a line for the technician."""
    from firmware_config.loader import PasswordFileError, find_mqtt_password
    from protocol.broker_url import BrokerUrlError, parse_broker_url
    from server.app import CollectorLogin

    try:
        parse_broker_url(args.broker)
        password = find_mqtt_password(os.environ)
    except (BrokerUrlError, PasswordFileError) as exc:
        raise MqttLoginError(str(exc)) from exc
    user = args.username or None
    if user is not None and password is None:
        # Worth saying: a site's broker refuses this with no more than "Not authorized".
        logging.getLogger("gatescan.collector").warning(
            "no MQTT password in $GATESCAN_MQTT_PASSWORD or the systemd credential "
            "mqtt_password; logging in as %r without one",
            user,
        )
    return CollectorLogin(args.broker, args.client_id, user, password, args.mqtt_client)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so every process shuts down the same clean way."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
