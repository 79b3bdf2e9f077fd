"""The dashboard on a real SQLite file, or a real PostgreSQL database (`both_backends`),
driven through FastAPI's TestClient, with a clock the tests move instead of sleeping: the
fixtures (`clock`, `store`, `settings`, `app`, `client`; a plugin of tests/conftest.py, so the
store and command tests have them too), a fast real hasher, logging in, and stored entries to
show.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from gatescan.testing.postgres import PostgresServer
from protocol.messages import Event
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus
from server.accounts.passwords import PasswordHasher
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.store.database import Store

# The real scrypt, at a cost (4 MiB, p=1) that keeps a hundred logins quick; production uses
# 32 MiB and p=3.
FAST_HASHER = PasswordHasher(n=2**12, p=1)


PASSWORD = "correct horse battery"


START = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 10:00 in Ho Chi Minh City


_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class Answer(Protocol):
    """What tests read of the test client's answer (httpx's Response, whichever httpx)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...


@dataclass
class MovableClock:
    """Wall clock and monotonic clock in one, moved by the test."""

    now: datetime = START
    mono: float = field(default=1000.0)

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def login_form_token(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200, page.text
    found = _CSRF_INPUT.search(page.text)
    assert found, "the login form has no csrf_token field"
    return found.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log in through the form like a browser; return the session's CSRF token."""
    token = login_form_token(client)
    answer = client.post(
        "/login", data={"username": name, "password": password, "csrf_token": token, "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    return session_csrf(client)


def session_csrf(client: TestClient) -> str:
    """The logged-in session's CSRF token, as the pages put it in their forms."""
    from server.dashboard.state import SESSION_COOKIE

    secret = client.cookies.get(SESSION_COOKIE)
    assert secret
    app: FastAPI = client.app  # type: ignore[assignment]
    session = app.state.web.accounts.session(secret)
    assert session is not None
    return str(session.csrf_token)


def bearer(app: FastAPI, role: Role) -> dict[str, str]:
    token = app.state.web.accounts.create_token(f"script-{role.label}", role)
    return {"Authorization": f"Bearer {token}"}


def cccd_event(
    n: int,
    *,
    subject: str,
    name: str = "Nguyễn Văn An",
    ts: datetime = START,
    device: str = "gate-1",
    site: str = "hq",
    direction: Direction = Direction.IN,
    status: VerdictStatus = VerdictStatus.RECORDED,
) -> Event:
    code = f"{subject}||{name}|01011990|Nam|Hà Nội|01012021|{n}".encode()
    return Event(
        event_id=f"evt-{device}-{n:06d}",
        device_id=device,
        site_id=site,
        seq=n,
        boot_id="boot-1",
        ts=ts,
        clock_synced=True,
        direction=direction,
        status=status,
        reason=Reason.OK if status is not VerdictStatus.DENIED else Reason.BLOCKED,
        credential_type=CredentialType.CCCD,
        subject_id=subject,
        subject_name=name,
        code_sha256=hashlib.sha256(code).hexdigest(),
        code_length=len(code),
    )


def raw_event(n: int, text: str, *, ts: datetime = START, device: str = "gate-1") -> Event:
    code = text.encode()
    digest = hashlib.sha256(code).hexdigest()
    return Event(
        event_id=f"raw-{device}-{n:06d}",
        device_id=device,
        site_id="hq",
        seq=n,
        boot_id="boot-1",
        ts=ts,
        clock_synced=True,
        direction=Direction.IN,
        status=VerdictStatus.RECORDED,
        reason=Reason.OK,
        credential_type=CredentialType.RAW,
        subject_id=digest,
        code_sha256=digest,
        code_length=len(code),
        code_text=text,
    )


def app_routes(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, dependant) of every route the app serves, included routers flattened
    (FastAPI includes routers lazily); mounts (static files) have no methods and are left out."""
    from fastapi import routing

    flatten = getattr(routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten is not None else list(app.routes)
    found = []
    for route in routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                found.append(
                    (method, str(getattr(route, "path", "")), getattr(route, "dependant", None))
                )
    return found


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


# The databases a suite that runs on both (`both_backends`, `both_backends_with_schema`) runs on:
# a SQLite file, and a fresh database on the PostgreSQL the tests start
# (tests/support/postgres.py).
BACKENDS = ("sqlite", "postgresql")


def _migrate(url: URL) -> None:
    Store(url).close()


@pytest.fixture(scope="session")
def postgres_schema(postgres_server: PostgresServer) -> str:
    """A template database with the schema migrated to the newest revision, made once a session
    (a worker): a database copied from it costs what an empty one does, where running the
    migrations in each test's database took several times that."""
    return postgres_server.create_template("gatescan_schema", _migrate)


@pytest.fixture
def postgres_url_with_schema(
    postgres_server: PostgresServer, postgres_schema: str
) -> Iterator[URL]:
    """A fresh database for one test with the schema in place (a copy of `postgres_schema`)."""
    name = postgres_server.create_database(template=postgres_schema)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.done_with(name)


def backend_url(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, *, schema: bool = False
) -> Path | URL:
    """Where a store of this backend lives: a file in tmp_path, or a fresh PostgreSQL database,
    empty or (`schema`) with the tables made (the server is started only when a test asks for
    one)."""
    if backend == "postgresql":
        url: URL = request.getfixturevalue("postgres_url_with_schema" if schema else "postgres_url")
        return url
    path = tmp_path / "gatescan.db"
    if schema:
        shutil.copyfile(request.getfixturevalue("sqlite_schema"), path)
    return path


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the schema migrated to the newest revision, made once a session (a
    worker), which `both_backends_with_schema` copies: as on PostgreSQL, quicker than running
    the migrations in each test's file. Closed, so its WAL is checkpointed into it."""
    path = tmp_path_factory.mktemp("sqlite-schema") / "gatescan.db"
    Store(path).close()
    return path


@pytest.fixture
def store_url(tmp_path: Path) -> Path | URL:
    """The `store`'s database: SQLite. A suite that runs on both overrides this fixture with
    `both_backends` (tests/server/store/conftest.py) or `both_backends_with_schema`
    (tests/server/dashboard/conftest.py, ...)."""
    return tmp_path / "gatescan.db"


def both_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    """The body of a `store_url` fixture parametrized with BACKENDS: on PostgreSQL an empty
    database, which the `store` brings up with the migrations (for the tests of the schema and
    its upgrades)."""
    return backend_url(request, str(request.param), tmp_path)


def both_backends_with_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    """`both_backends`, the database (a SQLite file, a PostgreSQL database) with the schema
    already made: for the suites whose subject is not the migrations (the dashboard's),
    quicker."""
    return backend_url(request, str(request.param), tmp_path, schema=True)


def db_option(url: Path | URL) -> str:
    """A `store_url` as a command's --db (or ServerOptions.db_url) takes it: a SQLite file's
    path, a PostgreSQL URL in full."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=False)
    return str(url)


@pytest.fixture
def store(store_url: Path | URL) -> Iterator[Store]:
    with Store(store_url) as opened:
        yield opened


@pytest.fixture
def settings() -> WebSettings:
    return WebSettings(login_failures_per_user=3, login_failures_per_ip=10, session_idle_s=600)


@pytest.fixture
def app(store: Store, settings: WebSettings, clock: MovableClock) -> FastAPI:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)
    return create_web_app(
        store, settings, clock=clock, monotonic=clock.monotonic, hasher=FAST_HASHER
    )


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as test_client:
        yield test_client
