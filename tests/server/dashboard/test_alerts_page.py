"""The alerts on the dashboard (issue 16): /alerts and /api/v1/alerts list the open alerts and
those cleared in the last day of the account's sites; a manager acknowledges one of their own
sites (a POST with the CSRF token, audited with the alert's site), a viewer sees but cannot, and
an alert of another site is 404. A gate's or site's words are shown as text, never markup. The
fleet page says how many are open. The real app on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from server.accounts.users import Accounts, Role
from server.store.alerts import AlertRows, TrackedAlert
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.web import (
    BACKENDS,
    PASSWORD,
    START,
    MovableClock,
    both_backends,
    log_in,
)

HOSTILE_GATE = 'gate-"><img src=x onerror=alert(1)>'
HOSTILE_SITE = "annex<script>alert(1)</script>"
MIN = timedelta(minutes=1)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


def tracked(key: str, site: str, device: str, *, opened: bool = True) -> TrackedAlert:
    return TrackedAlert(
        key=key,
        kind="offline",
        site_id=site,
        device_id=device,
        for_s=0.0,
        summary_en=f"gate {device} is offline",
        summary_vi=f"cổng {device} mất kết nối",
        first_seen=START - 10 * MIN,
        last_seen=START,
        opened_at=START - 10 * MIN if opened else None,
    )


def ids(store: Store) -> dict[str, int]:
    return {row.key: row.id for row in AlertRows(store.engine).live()}


@pytest.fixture
def alerts_app(app: FastAPI, store: Store) -> FastAPI:
    """hq: gate-hq-1 offline (open), gate-hq-2 being watched (not told), gate-hq-old cleared
    two days ago, gate-hq-3 cleared an hour ago; the hostile site's gate offline; the
    installation's dead letters."""
    accounts: Accounts = app.state.web.accounts
    accounts.add_user("quan-ly-hq", Role.MANAGER, PASSWORD, sites=["hq"])
    accounts.add_user("xem-hq", Role.VIEWER, PASSWORD, sites=["hq"])
    kept = AlertRows(store.engine)
    kept.save([tracked("offline:gate-hq-old", "hq", "gate-hq-old")], [])
    kept.save([], [("offline:gate-hq-old", START - 48 * 60 * MIN)])
    kept.save([tracked("offline:gate-hq-3", "hq", "gate-hq-3")], [])
    kept.save([], [("offline:gate-hq-3", START - 60 * MIN)])
    kept.save(
        [
            tracked("offline:gate-hq-1", "hq", "gate-hq-1"),
            tracked("clock:gate-hq-2", "hq", "gate-hq-2", opened=False),
            tracked(f"offline:{HOSTILE_GATE}", HOSTILE_SITE, HOSTILE_GATE),
            tracked("dead_letters", "", ""),
        ],
        [],
    )
    return app


def session(app: FastAPI, name: str) -> Iterator[tuple[TestClient, str]]:
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        yield client, log_in(client, name)


@pytest.fixture
def manager_hq(alerts_app: FastAPI) -> Iterator[tuple[TestClient, str]]:
    yield from session(alerts_app, "quan-ly-hq")


@pytest.fixture
def viewer_hq(alerts_app: FastAPI) -> Iterator[tuple[TestClient, str]]:
    yield from session(alerts_app, "xem-hq")


@pytest.fixture
def admin(alerts_app: FastAPI) -> Iterator[tuple[TestClient, str]]:
    yield from session(alerts_app, "admin")


def rows_of(page: str, table: str) -> list[str]:
    found = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S)
    return re.findall(r'data-alert="(\d+)"', found.group(1)) if found else []


def test_a_manager_sees_the_open_and_recently_cleared_alerts_of_their_sites_only(
    manager_hq: tuple[TestClient, str], store: Store
) -> None:
    client, _ = manager_hq
    page = client.get("/alerts")
    assert page.status_code == 200
    kept = ids(store)
    assert rows_of(page.text, "alerts-open") == [str(kept["offline:gate-hq-1"])]
    assert "cổng gate-hq-1 mất kết nối" in page.text  # Vietnamese, the default
    assert "gate-hq-3" in page.text and "gate-hq-old" not in page.text  # cleared 1 h / 2 days
    assert "gate-hq-2" not in page.text  # not yet told
    assert "annex" not in page.text and "dead_letters" not in page.text

    listed = client.get("/api/v1/alerts").json()
    assert [a["device_id"] for a in listed["open"]] == ["gate-hq-1"]
    assert [a["device_id"] for a in listed["cleared"]] == ["gate-hq-3"]
    assert listed["sites"] == ["hq"]


def test_an_admin_sees_every_site_s_and_the_installation_s_alerts_as_text(
    admin: tuple[TestClient, str],
) -> None:
    client, _ = admin
    page = client.get("/alerts", headers={"Accept-Language": "en"}).text
    assert len(rows_of(page, "alerts-open")) == 3
    assert HOSTILE_SITE not in page and HOSTILE_GATE not in page  # never as markup...
    assert "annex&lt;script&gt;alert(1)&lt;/script&gt;" in page  # ...but as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    listed = client.get("/api/v1/alerts").json()
    assert {a["site_id"] for a in listed["open"]} == {"hq", HOSTILE_SITE, ""}
    assert listed["sites"] is None


def test_a_manager_acknowledges_an_alert_of_their_site_once_and_it_is_audited(
    manager_hq: tuple[TestClient, str], store: Store, clock: MovableClock
) -> None:
    client, csrf = manager_hq
    alert_id = ids(store)["offline:gate-hq-1"]
    before = client.get("/alerts").text
    assert f'action="/alerts/{alert_id}/acknowledge"' in before

    answer = client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf})
    assert (answer.status_code, answer.headers["location"]) == (303, "/alerts")
    clock.advance(60)
    again = client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf})
    assert again.status_code == 303  # a second click keeps the first acknowledgement

    [row] = [r for r in AlertRows(store.engine).live() if r.id == alert_id]
    assert (row.acknowledged_by, row.acknowledged_at) == ("quan-ly-hq", START)
    [audited] = AuditLog(store.engine).rows(action="alert")
    assert (audited.actor, audited.site_id, audited.subject) == ("quan-ly-hq", "hq", "gate-hq-1")
    assert audited.details["alert_id"] == alert_id
    after = client.get("/alerts").text
    assert f'action="/alerts/{alert_id}/acknowledge"' not in after
    assert 'badge-neutral">quan-ly-hq, ' in after


def test_without_the_csrf_token_an_acknowledgement_is_refused(
    manager_hq: tuple[TestClient, str], store: Store
) -> None:
    client, _ = manager_hq
    alert_id = ids(store)["offline:gate-hq-1"]
    assert client.post(f"/alerts/{alert_id}/acknowledge", data={}).status_code == 403
    assert AuditLog(store.engine).rows(action="alert") == []


def test_an_alert_of_another_site_or_not_open_is_404_to_a_manager(
    manager_hq: tuple[TestClient, str], store: Store, alerts_app: FastAPI
) -> None:
    client, csrf = manager_hq
    kept = ids(store)
    for key in (f"offline:{HOSTILE_GATE}", "dead_letters", "clock:gate-hq-2"):
        answer = client.post(f"/alerts/{kept[key]}/acknowledge", data={"csrf_token": csrf})
        assert answer.status_code == 404, key
    assert client.post("/alerts/99999/acknowledge", data={"csrf_token": csrf}).status_code == 404
    token = alerts_app.state.web.accounts.create_token("bot-hq", Role.MANAGER, sites=["hq"])
    by_api = client.post(
        f"/api/v1/alerts/{kept[f'offline:{HOSTILE_GATE}']}/acknowledge",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert by_api.status_code == 404
    assert all(row.acknowledged_at is None for row in AlertRows(store.engine).live())
    assert AuditLog(store.engine).rows(action="alert") == []


def test_a_viewer_sees_the_alerts_but_cannot_acknowledge(
    viewer_hq: tuple[TestClient, str], store: Store
) -> None:
    client, csrf = viewer_hq
    alert_id = ids(store)["offline:gate-hq-1"]
    page = client.get("/alerts").text
    assert rows_of(page, "alerts-open") == [str(alert_id)]
    assert "/acknowledge" not in page
    answer = client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf})
    assert answer.status_code == 403
    assert AuditLog(store.engine).rows(action="alert") == []


def test_a_script_acknowledges_by_the_api(alerts_app: FastAPI, store: Store) -> None:
    token = alerts_app.state.web.accounts.create_token("bot", Role.MANAGER, sites=["hq"])
    alert_id = ids(store)["offline:gate-hq-1"]
    with TestClient(alerts_app) as client:
        answer = client.post(
            f"/api/v1/alerts/{alert_id}/acknowledge",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 200
    assert json.loads(answer.text)["acknowledged_by"] == "token:bot"


def test_the_fleet_page_says_how_many_alerts_are_open(
    manager_hq: tuple[TestClient, str], admin: tuple[TestClient, str], store: Store
) -> None:
    def badge(client: TestClient) -> str:
        found = re.search(
            r'<a id="alerts-badge"[^>]*href="/alerts">([^<]*)</a>', client.get("/").text
        )
        return found.group(1) if found else ""

    assert badge(manager_hq[0]) == "1 cảnh báo đang mở (1 chưa xác nhận)"
    assert badge(admin[0]) == "3 cảnh báo đang mở (3 chưa xác nhận)"
    client, csrf = manager_hq
    client.post(f"/alerts/{ids(store)['offline:gate-hq-1']}/acknowledge", data={"csrf_token": csrf})
    assert badge(client) == "1 cảnh báo đang mở (0 chưa xác nhận)"
    AlertRows(store.engine).save([], [("offline:gate-hq-1", START)])
    assert badge(client) == ""
