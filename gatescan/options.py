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
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import CollectorLogin
    from server.broker_admin.dynsec import AdminLogin

# Exit codes, the same for every command.
EXIT_OK = 0
EXIT_FAILED = 1  # could not start, or failed while running (the message says why)
EXIT_BAD_INPUT = 2  # a configuration, an argument or a file to fix (the message says which)
EXIT_NO_SUCH = 3  # no such user or token

DEFAULT_DB = "sqlite:///gatescan.db"
DEFAULT_BROKER = "mqtt://localhost:1883"
# server.collector.identity's share group (not imported, as MQTT_CLIENTS below).
DEFAULT_SHARE_GROUP = "collectors"
DEFAULT_COLLECTOR_USER = "collector"
DEFAULT_ADMIN_USER = "gatescan-admin"  # server.site.dynsec_config.ADMIN_USER (test_options)
ADMIN_PASSWORD_ENV = "GATESCAN_ADMIN_PASSWORD"
ADMIN_CREDENTIAL = "admin_password"  # the systemd credential (LoadCredential=)
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


def no_database(db: str, command: str) -> bool:
    """Whether `db` is a SQLite file that is not there, said on stderr as `command`'s error: any
    command but one that adds may not create the database (a missing file is a typo)."""
    missing = missing_sqlite_file(db)
    if missing is not None:
        print(f"{command}: no database at {missing}", file=sys.stderr)
    return missing is not None


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """How the collector reaches the broker: --broker, --client-id, --username."""
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="default: %(default)s")
    parser.add_argument(
        "--client-id",
        default=None,
        help="the MQTT client id; give one that stays the same across restarts, so a restart"
        " takes up the session the broker queued events in (default: gatescan-collector-HOST-PID-"
        "RANDOM, new for each process, its session kept 5 minutes; a broker with"
        " use_username_as_clientid takes the user name instead)",
    )
    parser.add_argument(
        "--share-group",
        default=DEFAULT_SHARE_GROUP,
        metavar="NAME",
        help="take the gates' events as a member of this MQTT v5 shared subscription, so several"
        " collectors share them, each event to one ('' : every event to this collector;"
        " default: %(default)s)",
    )
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=None,
        metavar="SECONDS",
        help="how long the broker keeps this collector's session and queues its events while it"
        " is away (default: 7 days with --client-id, 300 s without)",
    )
    parser.add_argument(
        "--publish-policy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish the sites' policies to their gates (default: on); with several collectors"
        " leave it on for one and give the others --no-publish-policy",
    )
    parser.add_argument(
        "--username",
        default=DEFAULT_COLLECTOR_USER,
        help="broker user, the ACL's `user collector` (default: collector; '' logs in"
        " anonymously); the password comes from $GATESCAN_MQTT_PASSWORD or the systemd"
        " credential mqtt_password",
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="a file holding the broker password, read when neither $GATESCAN_MQTT_PASSWORD nor"
        " the systemd credential mqtt_password gives one",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="with an mqtts:// broker: the CA its certificate must be signed by (gatescan site"
        " init's ca.crt), alone; default: the system's CA store. The host name is checked",
    )
    parser.add_argument(
        "--cert-file", type=Path, metavar="FILE", help="a client certificate for a broker that asks"
    )
    parser.add_argument(
        "--key-file", type=Path, metavar="FILE", help="its key, unless it is in --cert-file"
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
    from protocol.broker_tls import BrokerTls, BrokerTlsError, client_tls_context
    from protocol.broker_url import BrokerUrlError, parse_broker_url
    from server.app import CollectorLogin

    tls = BrokerTls(args.ca_file, args.cert_file, args.key_file)
    try:
        address = parse_broker_url(args.broker)
        if tls.any_file and not address.tls:
            raise MqttLoginError(
                f"--ca-file, --cert-file and --key-file are for TLS, but --broker {args.broker}"
                " is not mqtts://; write mqtts://host:port"
            )
        if address.tls:
            client_tls_context(tls)  # every file readable and usable, said now
        password = find_mqtt_password(os.environ, args.password_file)
    except (BrokerUrlError, BrokerTlsError, PasswordFileError) as exc:
        raise MqttLoginError(str(exc)) from exc
    user = args.username or None
    if user is not None and password is None:
        # Worth saying: a site's broker refuses this with no more than "Not authorized".
        logging.getLogger("gatescan.collector").warning(
            "no MQTT password in $GATESCAN_MQTT_PASSWORD or the systemd credential "
            "mqtt_password; logging in as %r without one",
            user,
        )
    if args.session_expiry is not None and args.session_expiry < 0:
        raise MqttLoginError(f"--session-expiry: 0 seconds or more, not {args.session_expiry}")
    share_group = args.share_group or None
    if share_group is not None and any(char in share_group for char in "/+#"):
        raise MqttLoginError(f"--share-group: one topic level without / + #, not {share_group!r}")
    return CollectorLogin(
        args.broker,
        args.client_id,
        user,
        password,
        args.mqtt_client,
        tls,
        share_group=share_group,
        session_expiry_s=args.session_expiry,
        publish_policy=args.publish_policy,
    )


def add_admin_options(parser: argparse.ArgumentParser) -> None:
    """How a server command changes gates' broker accounts: the dynamic security admin."""
    parser.add_argument(
        "--admin-username",
        default=DEFAULT_ADMIN_USER,
        help="the broker's dynamic security admin (default: %(default)s)",
    )
    parser.add_argument(
        "--admin-password-file",
        type=Path,
        metavar="FILE",
        help=f"its password (site init's dynsec-admin.password), read when neither"
        f" ${ADMIN_PASSWORD_ENV} nor the systemd credential {ADMIN_CREDENTIAL} gives one",
    )


def admin_login(args: argparse.Namespace) -> AdminLogin:
    """The admin's login: the broker options' URL and TLS files, the admin's name, its
    password from the environment, the credential or the file. MqttLoginError if none."""
    from firmware_config.schema import read_secret
    from protocol.broker_tls import BrokerTls, BrokerTlsError, client_tls_context
    from protocol.broker_url import BrokerUrlError, parse_broker_url
    from server.broker_admin.dynsec import AdminLogin

    tls = BrokerTls(args.ca_file, args.cert_file, args.key_file)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    sources = [Path(credentials) / ADMIN_CREDENTIAL] if credentials else []
    sources = [path for path in sources if path.is_file()]
    try:
        if parse_broker_url(args.broker).tls:
            client_tls_context(tls)
        password = os.environ.get(ADMIN_PASSWORD_ENV) or None
        for path in [*sources, *([args.admin_password_file] if args.admin_password_file else [])]:
            if password is None:
                password = read_secret(path) or None
    except (BrokerUrlError, BrokerTlsError) as exc:
        raise MqttLoginError(str(exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MqttLoginError(f"cannot read the admin's password: {exc}") from exc
    if password is None:
        raise MqttLoginError(
            f"no password for the broker's admin {args.admin_username!r}: give"
            f" --admin-password-file (site init's dynsec-admin.password) or --config"
        )
    return AdminLogin(args.broker, args.admin_username, password, tls)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """--config FILE: the server's config file (server.toml) gives the flags' defaults; a flag on
    the command line still wins (see `with_config_file`)."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="server.toml (as `gatescan site init` writes it): its keys are these flags without"
        " their dashes, broker ones under [mqtt]; flags given here win",
    )
    parser.set_defaults(command_parser=parser)


class ConfigFileError(ValueError):
    """The config file cannot be used; str() lists every problem, one per line."""


def with_config_file(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, args: argparse.Namespace
) -> argparse.Namespace:
    """The command's arguments again, with the --config file's settings as the defaults of its
    flags: flags given > the file > the flags' own defaults. Raises ConfigFileError."""
    from firmware_config.errors import ConfigError
    from server.site.server_config import load_server_config

    try:
        config = load_server_config(args.config)
    except ConfigError as exc:
        raise ConfigFileError(str(exc)) from None
    command: argparse.ArgumentParser = args.command_parser
    known = {action.dest for action in command._actions}
    command.set_defaults(**{k: v for k, v in config.flag_values().items() if k in known})
    return parser.parse_args(argv)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so every process shuts down the same clean way."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
