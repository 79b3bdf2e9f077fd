"""/metrics on the dashboard's app (a real SQLite file, FastAPI's TestClient): who may read it,
and what the database-derived metrics say, parsed with prometheus_client's own parser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from protocol.messages import Status, Telemetry
from server.accounts.users import USER_ROLES, AccountError, Accounts, Role
from server.store.database import Store
from server.store.site_policy import bump_version
from tests.support.web import FAST_HASHER, PASSWORD, START, MovableClock, bearer, log_in

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client: TestClient, headers: dict[str, str]) -> Samples:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


@pytest.fixture
def metrics_token(app: FastAPI) -> dict[str, str]:
    return bearer(app, Role.METRICS)


def test_without_credentials_or_with_a_wrong_token_the_answer_is_401(
    client: TestClient,
) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "gatescan_" not in answer.text
    for header in ("Bearer gst_not-a-real-token", "Basic bWV0cmljczp4", "Bearer "):
        assert client.get("/metrics", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MANAGER, Role.TECHNICIAN])
def test_a_viewer_or_manager_is_refused_by_token_and_by_session(
    app: FastAPI, client: TestClient, role: Role
) -> None:
    assert client.get("/metrics", headers=bearer(app, role)).status_code == 403
    log_in(client, role.label)
    answer = client.get("/metrics")
    assert answer.status_code == 403
    assert "gatescan_" not in answer.text


def test_a_metrics_token_and_an_admin_may_read_it(
    app: FastAPI, client: TestClient, metrics_token: dict[str, str]
) -> None:
    assert ("gatescan_gates_in_fault", ()) not in scrape(client, metrics_token)  # no gate yet
    assert scrape(client, bearer(app, Role.ADMIN))
    log_in(client, "admin")
    assert client.get("/metrics").status_code == 200


def test_a_metrics_token_opens_no_other_route(
    app: FastAPI, client: TestClient, metrics_token: dict[str, str]
) -> None:
    """Every route of the app that needs a role (the route list, as tests/server/dashboard/
    test_auth.py builds it) answers a metrics token 403."""
    from tests.server.dashboard.test_auth import PATH_VALUES, PROTECTED

    tried = 0
    for method, path, _role in PROTECTED:
        if method != "GET":
            continue  # state-changing routes: a bearer request passes CSRF, then the role check
        answer = client.get(path.format(**PATH_VALUES), headers=metrics_token)
        assert answer.status_code == 403, path
        tried += 1
    assert tried > 10


def test_no_user_may_hold_the_metrics_role(app: FastAPI) -> None:
    accounts: Accounts = app.state.web.accounts
    with pytest.raises(AccountError, match="for API tokens"):
        accounts.add_user("prometheus", Role.METRICS, PASSWORD)
    assert Role.METRICS not in USER_ROLES


def test_gates_telemetry_dead_letters_and_policy_versions_are_shown(
    store: Store, clock: MovableClock, client: TestClient, metrics_token: dict[str, str]
) -> None:
    site = 'Bệnh viện "Chợ Rẫy" \\ khu A'  # free text: escaped by the library, read back whole
    for device, faults in (("gate-1", []), ("gate-2", ["camera"])):
        status = Status(state="online", ts=START, version="t", site_id=site, faults=faults)
        store.record_status(device, status, START)
    telemetry = Telemetry(
        ts=START,
        uptime_s=60,
        fps=12.5,
        decode_ms=20.0,
        outbox_depth=7,
        clock_synced=True,
        version="t",
        frames_dropped=3,
    )
    store.record_telemetry("gate-1", telemetry, START)
    store.record_status("gate-3", Status(state="offline", ts=START, site_id="hq"), START)
    store.dead_letter("gatescan/v1/devices/gate-1/events", b"{", "invalid_json", "x", START)
    with store.engine.begin() as conn:
        bump_version(conn, site, START)
        bump_version(conn, site, START)
    clock.advance(5)

    found = scrape(client, metrics_token)

    gate1 = (("device_id", "gate-1"), ("site", site))
    assert found[("gatescan_gate_online", gate1)] == 1
    assert found[("gatescan_gate_outbox_depth", gate1)] == 7
    assert found[("gatescan_gate_decode_fps", gate1)] == 12.5
    assert found[("gatescan_gate_decode_milliseconds", gate1)] == 20
    assert found[("gatescan_gate_frames_dropped", gate1)] == 3
    gate2 = (("device_id", "gate-2"), ("site", site))
    assert ("gatescan_gate_outbox_depth", gate2) not in found  # no telemetry: no sample
    assert found[("gatescan_gates", (("site", site), ("state", "online")))] == 2
    assert found[("gatescan_gates_in_fault", (("site", site),))] == 1
    assert found[("gatescan_gates", (("site", "hq"), ("state", "offline")))] == 1
    assert found[("gatescan_dead_letters", (("reason", "invalid_json"),))] == 1
    assert found[("gatescan_site_policy_version", (("site", site),))] == 2
    # No collector in this process: no ingest metrics, rather than zeros that look like a stall.
    assert not [name for name, _ in found if name.startswith("gatescan_events_")]

    clock.advance(timedelta(hours=1).total_seconds())
    later = scrape(client, metrics_token)
    assert later[("gatescan_gate_online", gate1)] == 0  # silent for an hour: offline
    assert later[("gatescan_gates", (("site", site), ("state", "offline")))] == 2


def test_failed_logins_are_counted_by_why(
    client: TestClient, metrics_token: dict[str, str]
) -> None:
    from tests.support.web import login_form_token

    for _ in range(2):
        form = {"username": "viewer", "password": "wrong", "csrf_token": login_form_token(client)}
        assert client.post("/login", data=form).status_code == 401

    found = scrape(client, metrics_token)

    assert found[("gatescan_logins_failed_total", (("why", "wrong_password"),))] == 2


def test_one_registry_per_app_and_scrapes_do_not_grow_it(
    app: FastAPI, client: TestClient, metrics_token: dict[str, str]
) -> None:
    first = client.get("/metrics", headers=metrics_token).text
    for _ in range(5):
        again = client.get("/metrics", headers=metrics_token).text
    names = {f.name for f in text_string_to_metric_families(first)}
    assert names == {f.name for f in text_string_to_metric_families(again)}


def test_a_second_app_on_the_same_store_has_its_own_registry(
    store: Store, clock: MovableClock
) -> None:
    from server.dashboard.app import create_web_app
    from server.dashboard.settings import WebSettings

    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    token = accounts.create_token("prometheus", Role.METRICS)
    for _ in range(2):  # a second registration in a global registry would raise here
        app = create_web_app(store, WebSettings(), clock=clock, hasher=FAST_HASHER)
        with TestClient(app) as client:
            assert scrape(client, {"Authorization": f"Bearer {token}"}) is not None
