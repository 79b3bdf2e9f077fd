"""`gatescan user add`, `token create`, `web` and `server` as an operator runs them: real
processes on a real database, a real broker and a real gate uplink."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.journal.journal import Journal
from device.uplink.link import Placement, Uplink
from gatescan.testing.broker import LocalBroker
from protocol.verdicts import Direction
from server.accounts.users import Accounts, Role
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.cli import dashboard_process, run_gatescan
from tests.support.waiting import wait_until
from tests.support.web import cccd_event

PASSWORD = "mật khẩu dài dài"


def gatescan(
    args: Sequence[str], cwd: Path, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_gatescan(args, cwd, stdin, timeout)


def test_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    result = gatescan(
        ["user", "add", "lan", "--role", "manager", "--db", str(db)], tmp_path, PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    with Store(db) as store:
        account = Accounts(store.engine).authenticate("lan", PASSWORD)
    assert account is not None
    assert account.role is Role.MANAGER


def test_user_add_refuses_a_taken_name_and_a_short_password(tmp_path: Path) -> None:
    db = str(tmp_path / "site.db")
    assert (
        gatescan(
            ["user", "add", "lan", "--role", "viewer", "--db", db], tmp_path, PASSWORD
        ).returncode
        == 0
    )
    again = gatescan(["user", "add", "lan", "--role", "admin", "--db", db], tmp_path, PASSWORD)
    assert (again.returncode, "already exists" in again.stderr) == (2, True)
    short = gatescan(["user", "add", "hoa", "--role", "admin", "--db", db], tmp_path, "abc\n")
    assert (short.returncode, "shorter than 12" in short.stderr) == (2, True)
    common = "password1234\n"  # long enough, and one of the most used passwords
    weak = gatescan(["user", "add", "hoa", "--role", "admin", "--db", db], tmp_path, common)
    assert (weak.returncode, "easy to guess" in weak.stderr) == (2, True)
    bad_role = gatescan(["user", "add", "hoa", "--role", "root", "--db", db], tmp_path, PASSWORD)
    assert bad_role.returncode == 2


def test_token_create_prints_a_token_that_opens_the_api(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    result = gatescan(
        ["token", "create", "nightly-export", "--role", "viewer", "--db", str(db)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("gst_") and len(token) > 40
    with Store(db) as store:
        account = Accounts(store.engine).account_for_token(token)
    assert account is not None
    assert (account.name, account.role) == ("token:nightly-export", Role.VIEWER)


def test_token_create_makes_a_metrics_token_and_user_add_refuses_that_role(
    tmp_path: Path,
) -> None:
    db = tmp_path / "site.db"
    made = gatescan(
        ["token", "create", "prometheus", "--role", "metrics", "--db", str(db)], tmp_path
    )
    assert made.returncode == 0, made.stderr
    with Store(db) as store:
        account = Accounts(store.engine).account_for_token(made.stdout.strip())
    assert account is not None and account.role == Role.METRICS
    refused = gatescan(["user", "add", "prom", "--role", "metrics", "--db", str(db)], tmp_path)
    assert refused.returncode != 0
    assert "invalid choice: 'metrics'" in refused.stderr


class Served:
    def __init__(self, process: subprocess.Popen[str], port: int, token: str) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/login", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            if self.process.poll() is not None:
                raise AssertionError(self.process.communicate()[0]) from None
            return False

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        output = self.process.communicate(timeout=30)[0]
        return self.process.returncode, output


@contextmanager
def serve(tmp_path: Path, db: Path, args: Sequence[str]) -> Iterator[Served]:
    """The command running on a free port until the block ends (SIGTERM is up to the test)."""
    with Store(db) as store:
        token = Accounts(store.engine).create_token("test", Role.ADMIN)
    with dashboard_process(args, db, tmp_path) as (process, port):
        served = Served(process, port, token)
        wait_until(served.up, 30, "the dashboard's login page")
        yield served


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "gate") as opened:
        yield opened


def test_server_runs_collector_and_dashboard_and_purges(
    tmp_path: Path, broker: LocalBroker, journal: Journal
) -> None:
    db = tmp_path / "site.db"
    now = datetime.now(UTC)
    with Store(db) as store:
        store.add_events(
            [
                cccd_event(1, subject="079190000001", ts=now - timedelta(days=40)),
                cccd_event(2, subject="079190000002", ts=now - timedelta(hours=1)),
            ],
            received_at=now,
        )
    args = ["server", "--broker", broker.url, "--username", "", "--retention-days", "30"]
    with serve(tmp_path, db, args) as server:
        code, output = _watch_a_gate(server, broker, journal)
    assert code == 0, output
    with Store(db) as store:
        (purge,) = AuditLog(store.engine).rows(action="purge")
    assert purge.details["deleted"] == 1
    assert "retention: deleted 1 entries" in output


def _watch_a_gate(server: Served, broker: LocalBroker, journal: Journal) -> tuple[int, str]:
    uplink = Uplink(
        device_id="gate-lobby",
        broker_url=broker.url,
        journal=journal,
        version="9.9.9",
        boot_id="boot-1",
        placement=Placement("hq", "Sảnh A", Direction.OUT),
    )
    uplink.start()
    try:

        def lobby() -> dict[str, Any] | None:
            status, gates = server.get("/api/v1/devices")
            assert status == 200
            return next((g for g in gates if g["device_id"] == "gate-lobby" and g["online"]), None)

        gate = wait_until(lobby, 20, "the gate to show online")
        assert (gate["site_id"], gate["location"], gate["direction"]) == ("hq", "Sảnh A", "out")
        assert gate["version"] == "9.9.9"
        # The 40-day-old entry is purged, the hour-old one stays.
        wait_until(lambda: server.get("/api/v1/entries")[1]["total"] == 1, 20, "the purge")
        uplink.stop(timeout=5)
        wait_until(lambda: not lobby(), 20, "the gate to show offline")
    finally:
        uplink.stop(timeout=2)
    return server.stop()


def test_web_serves_the_dashboard_alone_with_roles(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    with Store(db) as store:
        viewer = Accounts(store.engine).create_token("viewer", Role.VIEWER)
    with serve(tmp_path, db, ["web"]) as server:
        assert server.get("/api/v1/me")[1]["role"] == "admin"
        assert server.get("/api/v1/audit", token=viewer)[0] == 403
        assert server.get("/api/v1/entries", token="gst_wrong")[0] == 401
        code, output = server.stop()
    assert code == 0, output
    assert "gatescan dashboard on http://127.0.0.1:" in output


def test_a_bad_listen_address_is_a_configuration_error(tmp_path: Path) -> None:
    result = gatescan(["web", "--db", str(tmp_path / "x.db"), "--listen", "8080"], tmp_path)
    assert (result.returncode, "HOST:PORT" in result.stderr) == (2, True)


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        listen = f"127.0.0.1:{port}"
        result = gatescan(["web", "--db", str(tmp_path / "x.db"), "--listen", listen], tmp_path)
    assert result.returncode == 1
    assert f"--listen {listen}: cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert "Traceback" not in result.stderr
