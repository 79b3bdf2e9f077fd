"""`gatescan server` (the collector, the retention purge and the dashboard in one process) and
`gatescan web` (the dashboard alone, on a collector's database). The process itself is wired by
server/app.py's `build_server`; this module turns flags into its options."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    Commands,
    MqttLoginError,
    add_admin_options,
    add_broker_options,
    add_config_option,
    add_db_option,
    add_gate_limit_options,
    admin_login,
    collector_login,
    stop_on_signals,
)

if TYPE_CHECKING:
    from server.app import CollectorLogin, EnrolmentOptions, HomeAssistantOptions, Listen
    from server.dashboard.settings import WebSettings

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_RETENTION_DAYS = 90


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    server = commands.add_parser("server", help="collector and dashboard in one process")
    add_broker_options(server)
    add_gate_limit_options(server)
    _add_web_options(server)
    _add_enrolment_options(server)
    server.add_argument(
        "--alerts",
        type=Path,
        metavar="FILE",
        help="alerts.toml: when a gate goes down (and more), tell people by webhook and e-mail"
        " (docs/operations.md, 'Alerts'); default: no alerts",
    )
    add_config_option(server)
    server.set_defaults(run=run_server)

    web = commands.add_parser("web", help="the dashboard alone, on a collector's database")
    _add_web_options(web)
    web.set_defaults(run=run_web)


def _add_web_options(parser: argparse.ArgumentParser) -> None:
    add_db_option(parser)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default: %(default)s)")
    parser.add_argument("--site-timezone", default="Asia/Ho_Chi_Minh")
    parser.add_argument("--language", default="vi", choices=["vi", "en"], help="site default")
    parser.add_argument("--offline-after", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--tracing-window", type=int, default=60, metavar="MINUTES")
    parser.add_argument("--session-idle", type=float, default=1800.0, metavar="SECONDS")
    parser.add_argument(
        "--retention-days",
        type=int,
        default=None,
        help=f"purge entries older than this (server default: {DEFAULT_RETENTION_DAYS};"
        " web default: no purge, the server does it); 0 keeps entries forever",
    )
    parser.add_argument(
        "--secure-cookies", action="store_true", help="cookies over HTTPS only (behind TLS)"
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default="",
        metavar="IPS",
        help="the reverse proxies, comma-separated IPs or CIDR networks (e.g. 127.0.0.1 for a"
        " proxy on this machine), whose X-Forwarded-For names the client: the login limits count"
        " and the audit log names that address, the right-most one that is not a listed proxy."
        " Default: none, the client is the socket's peer and X-Forwarded-For is ignored",
    )
    parser.add_argument(
        "--releases",
        type=Path,
        metavar="DIR",
        help="signed release bundles (`gatescan release make`'s) offered on the updates page and"
        " served to gates at /releases/ (docs/operations.md, 'Updating gates')",
    )
    parser.add_argument(
        "--releases-url",
        metavar="URL",
        help="where gates reach /releases/, e.g. https://dashboard.example.com/releases",
    )
    add_public_url_option(parser)


def add_public_url_option(parser: argparse.ArgumentParser) -> None:
    """--public-url: where visitors' phones reach this server (the check-in posters' QR)."""
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="the server's public address, as visitors' phones reach it: check-in posters hold"
        " URL/c/TOKEN (docs/operations.md, 'Self check-in'), e.g. https://checkin.example.vn",
    )


def _add_enrolment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--enrol-listen",
        metavar="HOST:PORT",
        help="serve the enrolment service (HTTPS) here, for gates in setup mode"
        " (site init's server.toml: 0.0.0.0:8443); default: no enrolment service",
    )
    parser.add_argument("--enrol-cert-file", type=Path, metavar="FILE",
                        help="its certificate (site init's enrol.crt)")  # fmt: skip
    parser.add_argument(
        "--enrol-key-file",
        type=Path,
        metavar="FILE",
        help="its key (site init's enrol.key; the systemd credential enrol_key comes first)",
    )
    parser.add_argument("--gate-broker", metavar="URL",
                        help="the broker as gates reach it, mqtts://HOST:PORT, told to each gate"
                        " that enrols")  # fmt: skip
    add_admin_options(parser)


def enrolment_options(args: argparse.Namespace) -> EnrolmentOptions | None:
    """The enrolment service's options, None without --enrol-listen; ValueError naming what is
    missing or unusable."""
    import os
    import ssl

    from server.app import EnrolmentOptions

    if not args.enrol_listen:
        return None
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    key_file = args.enrol_key_file
    if credentials and (Path(credentials) / "enrol_key").is_file():
        key_file = Path(credentials) / "enrol_key"
    missing = [
        flag
        for flag, value in (
            ("--enrol-cert-file", args.enrol_cert_file),
            ("--enrol-key-file", key_file),
            ("--gate-broker", args.gate_broker),
            ("--ca-file", args.ca_file),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"--enrol-listen needs {', '.join(missing)} (or --config server.toml)")
    if not args.gate_broker.startswith("mqtts://"):
        raise ValueError(f"--gate-broker {args.gate_broker}: gates reach the broker by mqtts://")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            args.enrol_cert_file, key_file
        )
        ca_pem = args.ca_file.read_text(encoding="ascii")
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        raise ValueError(f"the enrolment service's certificate, key or CA: {exc}") from None
    try:
        admin = admin_login(args)
    except MqttLoginError as exc:
        raise ValueError(str(exc)) from None
    return EnrolmentOptions(
        listen=parse_listen(args.enrol_listen),
        cert_file=args.enrol_cert_file,
        key_file=key_file,
        gate_broker_url=args.gate_broker,
        ca_pem=ca_pem,
        admin=admin,
    )


def parse_listen(listen: str) -> Listen:
    """ "HOST:PORT", "[::1]:PORT" or ":PORT" (all interfaces)."""
    from server.app import Listen

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return Listen(host.strip("[]") or "0.0.0.0", int(port))


def web_settings(args: argparse.Namespace, retention_days: int | None) -> WebSettings:
    from server.dashboard.settings import WebSettings
    from server.site.server_config import load_server_config

    config_file: Path | None = getattr(args, "config", None)
    checkin = {} if config_file is None else load_server_config(config_file).checkin.web_settings()
    return WebSettings(
        site_timezone=args.site_timezone,
        default_language=args.language,
        offline_after_s=args.offline_after,
        tracing_window_min=args.tracing_window,
        session_idle_s=args.session_idle,
        retention_days=retention_days or None,
        secure_cookies=args.secure_cookies,
        forwarded_allow_ips=parse_proxies(args.forwarded_allow_ips),
        releases_dir=getattr(args, "releases", None),
        releases_url=getattr(args, "releases_url", None),
        public_url=getattr(args, "public_url", None),
        **checkin,  # server.toml's [checkin]: the page's limits, each site's words and questions
    )


def parse_proxies(text: str) -> tuple[str, ...]:
    """`--forwarded-allow-ips`: "127.0.0.1", "10.0.0.0/8,::1"; "" names none."""
    from server.dashboard.settings import trusted_network

    try:
        return tuple(str(trusted_network(item)) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise ValueError(f"--forwarded-allow-ips: {exc}") from None


def home_assistant_options(args: argparse.Namespace) -> HomeAssistantOptions | None:
    """server.toml's [home_assistant] (opt-in: None without it), its password file read and its
    TLS files checked now. Raises ValueError or OSError with the line for the admin."""
    from protocol.broker_tls import BrokerTls, BrokerTlsError, client_tls_context
    from protocol.broker_url import parse_broker_url
    from server.app import HomeAssistantOptions
    from server.home_assistant.discovery import Prefixes
    from server.home_assistant.publisher import HomeAssistantLogin
    from server.site.server_config import load_server_config

    config_file: Path | None = getattr(args, "config", None)
    if config_file is None:
        return None
    section = load_server_config(config_file).home_assistant  # read once already: it loads
    if section is None:
        return None
    tls = BrokerTls(section.ca_file, section.cert_file, section.key_file)
    if parse_broker_url(section.broker).tls:
        try:
            client_tls_context(tls)
        except BrokerTlsError as exc:
            raise ValueError(str(exc)) from exc
    password = None
    if section.password_file is not None:
        password = section.password_file.read_text(encoding="utf-8").strip()
    login = HomeAssistantLogin(section.broker, section.username, password, section.client_id, tls)
    prefixes = Prefixes(section.discovery_prefix, section.state_prefix)
    return HomeAssistantOptions(login, prefixes, section.every)


def run_web(args: argparse.Namespace) -> int:
    return _serve(args, "web", args.retention_days, collector=None)


def run_server(args: argparse.Namespace) -> int:
    try:
        login = collector_login(args)
    except MqttLoginError as exc:
        print(f"gatescan server: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    retention = DEFAULT_RETENTION_DAYS if args.retention_days is None else args.retention_days
    return _serve(args, "server", retention, collector=login)


def _serve(
    args: argparse.Namespace,
    command: str,
    retention_days: int | None,
    collector: CollectorLogin | None,
) -> int:
    from pydantic import ValidationError

    from firmware_config.errors import ConfigError
    from server.app import (
        AlertOptions,
        EnrolmentListenError,
        ListenError,
        ServerOptions,
        build_server,
    )
    from server.collector.limits import GateLimits

    try:
        listen = parse_listen(args.listen)
        settings = web_settings(args, retention_days)
        enrolment = enrolment_options(args) if collector is not None else None
    except (ValueError, ValidationError) as exc:
        print(f"gatescan {command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    alerts_file: Path | None = getattr(args, "alerts", None)
    try:
        home_assistant = home_assistant_options(args) if collector is not None else None
    except (ValueError, OSError) as exc:
        print(f"gatescan {command}: [home_assistant]: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = ServerOptions(
        db_url=args.db,
        collector=collector,
        dashboard=settings,
        listen=listen,
        retention_days=settings.retention_days,
        enrolment=enrolment,
        alerts=(AlertOptions(alerts_file, getattr(args, "ca_file", None)) if alerts_file else None),
        home_assistant=home_assistant,
    )
    if collector is not None:  # `gatescan web` has no collector, and no limits to set
        limits = GateLimits(args.gate_max_messages_per_second, args.gate_max_bytes_per_minute)
        options = dataclasses.replace(options, gate_limits=limits)
    stop = stop_on_signals()  # before anything starts: a Ctrl-C during start-up stops cleanly
    try:
        server = build_server(options)
    except EnrolmentListenError as exc:
        print(f"gatescan {command}: --enrol-listen {args.enrol_listen}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ListenError as exc:
        print(f"gatescan {command}: --listen {args.listen}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"gatescan {command}: --alerts {args.alerts}:\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"gatescan dashboard on {server.url}", file=sys.stderr, flush=True)
    if server.enrolment is not None:
        print(f"gatescan enrolment service on {server.enrolment.url}", file=sys.stderr, flush=True)
    return 0 if server.run(stop) else EXIT_FAILED
