"""build_server: the server side wired from its options, started, served and stopped (a real
SQLite file, and a real PostgreSQL for the dashboard that serves; a real uvicorn on real
sockets)."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from server.app import (
    DashboardServer,
    Listen,
    ListenError,
    Server,
    ServerOptions,
    bind,
    build_server,
)
from server.dashboard.settings import WebSettings
from server.store.database import Store
from tests.support.waiting import wait_until
from tests.support.web import BACKENDS, both_backends_with_schema, db_option


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends_with_schema(request, tmp_path)


def dashboard_options(db: Path | URL, listen: Listen) -> ServerOptions:
    return ServerOptions(
        db_url=db_option(db),
        dashboard=WebSettings(),
        listen=listen,
        web_log_level="warning",
    )


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1 port {taken_port}"):
        build_server(dashboard_options(tmp_path / "gatescan.db", Listen("127.0.0.1", taken_port)))


def test_the_demo_listens_on_another_port_when_its_own_is_taken(
    tmp_path: Path, taken_port: int
) -> None:
    listen = Listen("127.0.0.1", taken_port, any_port_if_taken=True)
    server = build_server(dashboard_options(tmp_path / "gatescan.db", listen))
    try:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        assert f":{taken_port}/" not in server.url
    finally:
        server.stop()


def test_the_dashboard_answers_until_stop_and_a_second_stop_is_harmless(
    store_url: Path | URL,
) -> None:
    server = build_server(dashboard_options(store_url, Listen("127.0.0.1", 0)))
    assert server.collector is None and server.retention is None and server.url is not None
    login = server.url + "login"
    stop = threading.Event()
    ran: list[bool] = []
    running = threading.Thread(target=lambda: ran.append(server.run(stop)))
    running.start()
    wait_until(lambda: status_of(login) == 200, 30, "the login page")

    stop.set()
    running.join(timeout=30)

    assert ran == [True] and not server.failed
    assert status_of(login) is None  # nobody listens any more
    server.stop()


async def refuses_to_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app whose start-up fails, as a web app with a broken dependency does."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database driver"})


def test_a_dashboard_that_stops_by_itself_ends_the_server_as_failed(tmp_path: Path) -> None:
    dashboard = DashboardServer(
        refuses_to_start, bind(Listen("127.0.0.1", 0)), log_level="critical"
    )
    server = Server(
        store=Store(tmp_path / "gatescan.db"), collector=None, retention=None, dashboard=dashboard
    )
    stop = threading.Event()

    assert server.run(stop) is False  # returns: the dashboard's end set `stop`

    assert stop.is_set() and server.failed


def test_an_ipv6_address_is_listened_on_alone_and_named_in_brackets() -> None:
    listeners = bind(Listen("::1", 0))
    try:
        [listener] = listeners
        assert listener.family == socket.AF_INET6
        assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        port = listener.getsockname()[1]
        assert DashboardServer(refuses_to_start, listeners).url == f"http://[::1]:{port}/"
    finally:
        for opened in listeners:
            opened.close()


def test_a_host_that_does_not_resolve_is_a_listen_error() -> None:
    with pytest.raises(ListenError, match=r"cannot resolve 'no-such-host\.invalid'"):
        bind(Listen("no-such-host.invalid", 8080))
