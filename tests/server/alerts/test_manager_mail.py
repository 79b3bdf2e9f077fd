"""Alerts mailed to each site's managers (alerts.toml's [managers]): an alert of site S goes to
the managers who hold S and have an e-mail address on their account, one message each per
delivery; the admins too when the file says so. A real SMTP server with STARTTLS (aiosmtpd)
and real accounts in a real database."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

from server.accounts.users import Accounts, Role
from server.alerts.config import load_alert_config, manager_routes_of
from server.alerts.delivery import AlertDispatcher
from server.alerts.rules import AlertRules, GateView, Snapshot, find_problems
from server.alerts.tracker import AlertTracker, Change
from server.store.database import Store
from tests.support.alert_receivers import Inbox, running_smtp
from tests.support.web import FAST_HASHER, PASSWORD

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def changes() -> list[Change]:
    """gate-hq-1 (hq) and gate-annex-1 (annex) offline, and refused messages piling up."""
    gates = [
        GateView("gate-hq-1", "hq", online=False, offline_for_s=900.0),
        GateView("gate-annex-1", "annex", online=False, offline_for_s=900.0),
    ]
    snapshot = Snapshot(gates, dead_letters_10min=99)
    return AlertTracker().update(find_problems(snapshot, AlertRules(), NOW), NOW)


def accounts_of(store: Store) -> Accounts:
    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    accounts.add_user("ql-hq", Role.MANAGER, PASSWORD, sites=["hq"], email="hq@example.vn")
    accounts.add_user("ql-annex", Role.MANAGER, PASSWORD, sites=["annex"])
    accounts.set_email("ql-annex", "annex@example.vn")
    accounts.add_user("ql-none", Role.MANAGER, PASSWORD, sites=["hq"])  # no address
    accounts.add_user("xem-hq", Role.VIEWER, PASSWORD, sites=["hq"], email="viewer@example.vn")
    accounts.add_user("cu", Role.MANAGER, PASSWORD, sites=["hq"], email="left@example.vn")
    accounts.set_disabled("cu", True)
    accounts.add_user("boss", Role.ADMIN, PASSWORD, email="boss@example.vn")
    return accounts


def deliver(
    tmp_path: Path, tls: tuple[ssl.SSLContext, Path], accounts: Accounts, extra: str
) -> tuple[dict[str, str | None], dict[str, str]]:
    inbox = Inbox()
    controller = running_smtp(inbox, tls[0])
    try:
        (tmp_path / "alerts.toml").write_text(
            f"""[managers]
host = "127.0.0.1"
port = {controller.port}
sender = "gatescan@example.vn"
ca_file = "{tls[1]}"
{extra}""",
            encoding="utf-8",
        )
        config = load_alert_config(tmp_path / "alerts.toml")
        routes = manager_routes_of(config, tmp_path, accounts.alert_recipients)
        results = AlertDispatcher([], routes).deliver(changes())
    finally:
        controller.stop()
    mailed = {}
    for message in inbox.messages:
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        mailed[str(message["To"])] = payload.decode("utf-8")
    return results, mailed


def test_a_manager_of_hq_gets_hq_s_alert_and_not_annex_s(
    tmp_path: Path, mail_tls: tuple[ssl.SSLContext, Path], store: Store
) -> None:
    results, mailed = deliver(tmp_path, mail_tls, accounts_of(store), "")
    assert sorted(mailed) == ["annex@example.vn", "hq@example.vn"]  # one message each
    assert set(results.values()) == {None}
    assert "gate gate-hq-1 is offline" in mailed["hq@example.vn"]
    assert "gate-annex-1" not in mailed["hq@example.vn"]
    assert "cổng gate-annex-1 mất kết nối" in mailed["annex@example.vn"]
    assert "gate-hq-1" not in mailed["annex@example.vn"]
    assert all("refused messages" not in text for text in mailed.values())  # the installation's


def test_with_admins_on_an_admin_gets_every_site_and_the_installation_s(
    tmp_path: Path, mail_tls: tuple[ssl.SSLContext, Path], store: Store
) -> None:
    _, mailed = deliver(tmp_path, mail_tls, accounts_of(store), "admins = true\n")
    assert sorted(mailed) == ["annex@example.vn", "boss@example.vn", "hq@example.vn"]
    boss = mailed["boss@example.vn"]
    assert "gate-hq-1" in boss and "gate-annex-1" in boss and "99 refused messages" in boss


def test_a_manager_of_every_site_gets_every_alert(store: Store) -> None:
    accounts = accounts_of(store)
    accounts.add_user("ql-all", Role.MANAGER, PASSWORD, email="all@example.vn")
    accounts.add_user("ql-two", Role.MANAGER, PASSWORD, sites=["annex"], email="hq@example.vn")
    found = accounts.alert_recipients()
    assert found == {
        "hq@example.vn": frozenset({"hq", "annex"}),  # one address, two managers: both sites
        "annex@example.vn": frozenset({"annex"}),
        "all@example.vn": None,
    }
