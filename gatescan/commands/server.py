"""The dashboard's commands: `gatescan server` (collector + dashboard in one process) and
`gatescan web` (the dashboard alone); `gatescan user ...` and `gatescan token ...` are in
account_commands.py."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from gatescan.commands.accounts import add_account_commands, add_db_option

if TYPE_CHECKING:
    from server.dashboard.settings import WebSettings
    from server.store.database import Store

EXIT_CANNOT_START = 1
EXIT_CONFIG = 2
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_RETENTION_DAYS = 90

log = logging.getLogger("gatescan.web")

Commands = argparse._SubParsersAction  # argparse's type for add_subparsers()


def add_web_commands(commands: Commands[argparse.ArgumentParser]) -> None:
    server = commands.add_parser("server", help="collector and dashboard in one process")
    _add_broker_options(server)
    _add_web_options(server)
    server.set_defaults(run=run_server)

    web = commands.add_parser("web", help="the dashboard alone, on a collector's database")
    _add_web_options(web)
    web.set_defaults(run=run_web)

    add_account_commands(commands)


def _add_broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default="mqtt://localhost:1883")
    parser.add_argument("--client-id", default="gatescan-collector")
    parser.add_argument(
        "--username",
        default="collector",
        help="broker user (default: collector; '' logs in anonymously); the password comes"
        " from $GATESCAN_MQTT_PASSWORD or the systemd credential mqtt_password",
    )


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


def parse_listen(listen: str) -> tuple[str, int]:
    """ "HOST:PORT", "[::1]:PORT" or ":PORT" (all interfaces)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def web_settings(args: argparse.Namespace, retention_days: int | None) -> WebSettings:
    from server.dashboard.settings import WebSettings

    return WebSettings(
        site_timezone=args.site_timezone,
        default_language=args.language,
        offline_after_s=args.offline_after,
        tracing_window_min=args.tracing_window,
        session_idle_s=args.session_idle,
        retention_days=retention_days or None,
        secure_cookies=args.secure_cookies,
    )


def run_web(args: argparse.Namespace) -> int:
    return _serve(args, "web", args.retention_days, collector=None)


def run_server(args: argparse.Namespace) -> int:
    from gatescan.options import MqttLoginError, collector_login

    try:
        username, password = collector_login(args.broker, args.username)
    except MqttLoginError as exc:
        print(f"gatescan server: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    retention = DEFAULT_RETENTION_DAYS if args.retention_days is None else args.retention_days
    broker = {"broker_url": args.broker, "client_id": args.client_id}
    return _serve(
        args, "server", retention, collector={**broker, "username": username, "password": password}
    )


def _serve(
    args: argparse.Namespace,
    command: str,
    retention_days: int | None,
    collector: dict[str, Any] | None,
) -> int:
    from pydantic import ValidationError

    from server.store.database import Store

    try:
        host, port = parse_listen(args.listen)
        settings = web_settings(args, retention_days)
    except (ValueError, ValidationError) as exc:
        print(f"gatescan {command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    store = Store(args.db)
    try:
        return _serve_store(store, settings, host, port, collector)
    finally:
        store.close()


def _serve_store(
    store: Store,
    settings: WebSettings,
    host: str,
    port: int,
    collector_options: dict[str, Any] | None,
) -> int:
    import uvicorn

    from gatescan.cli import stop_on_signals
    from server.collector.service import Collector
    from server.dashboard.app import create_web_app
    from server.store.retention import RetentionTask

    # Ours first: uvicorn's own handlers replace it while it runs and raise the signal again
    # when it has stopped, which then sets `stop` for the collector and the purge.
    stop = stop_on_signals()
    background: list[threading.Thread] = []
    if collector_options is not None:
        collector = Collector(store=store, **collector_options)
        thread = threading.Thread(
            target=collector.run_forever, args=(stop,), name="collector", daemon=True
        )
        thread.start()
        background.append(thread)
    retention = None
    if settings.retention_days is not None:
        retention = RetentionTask(store, settings.retention_days)
        retention.start()
    app = create_web_app(store, settings)
    # No access log: its URLs would hold ID numbers (/people/{id}, ?person=); who looked up
    # whom is in the audit log instead.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", proxy_headers=True, access_log=False
    )
    server = uvicorn.Server(config)
    print(f"gatescan dashboard on http://{host}:{port}/", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        stop.set()
        if retention is not None:
            retention.stop()
        for thread in background:
            thread.join(timeout=10)
    return 0 if server.started else EXIT_CANNOT_START
