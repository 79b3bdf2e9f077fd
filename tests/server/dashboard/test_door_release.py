"""A manager's "Release door" on the fleet page (pages.py `release_door`): a POST with the CSRF
token, an audit row naming the user and the gate, then the releaser (a collector's, in
`gatescan server`) is called; a viewer gets 403, a POST without the token is refused, and a
dashboard without a collector shows no button and answers 503."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from protocol.messages import COMMAND_ID_PATTERN, Status
from server.accounts.users import USER_ROLES, Accounts
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.web import FAST_HASHER, PASSWORD, START, MovableClock, log_in

GATE = "gate-1"


class Releaser:
    """Stands in for the collector's connection: records each call, answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.answer: str | None = None

    def __call__(self, device_id: str, by: str, command_id: str) -> str | None:
        self.calls.append((device_id, by, command_id))
        return self.answer


@pytest.fixture
def releaser() -> Releaser:
    return Releaser()


def web_app(store: Store, clock: MovableClock, releaser: Releaser | None) -> FastAPI:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)
    store.record_status(GATE, Status(state="online", ts=START, version="t"), START)
    return create_web_app(
        store,
        WebSettings(),
        clock=clock,
        monotonic=clock.monotonic,
        hasher=FAST_HASHER,
        door_releaser=releaser,
    )


@pytest.fixture
def door_client(store: Store, clock: MovableClock, releaser: Releaser) -> Iterator[TestClient]:
    with TestClient(web_app(store, clock, releaser), follow_redirects=False) as client:
        yield client


def door_rows(store: Store) -> list[tuple[str, str, dict[str, object]]]:
    return [(r.actor, r.subject, r.details) for r in AuditLog(store.engine).rows(action="door")]


def test_a_manager_releases_a_gate_s_door_audited_then_sent(
    door_client: TestClient, store: Store, releaser: Releaser
) -> None:
    csrf = log_in(door_client, "manager")
    page = door_client.get("/")
    assert f'action="/gates/{GATE}/release"' in page.text

    answer = door_client.post(f"/gates/{GATE}/release", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/?door=sent&gate={GATE}"
    [(device_id, by, command_id)] = releaser.calls
    assert (device_id, by) == (GATE, "manager") and re.match(COMMAND_ID_PATTERN, command_id)
    assert door_rows(store) == [
        ("manager", GATE, {"release": "dashboard", "command_id": command_id})
    ]
    notice = door_client.get(answer.headers["location"])
    assert "Đã gửi lệnh mở cửa đến gate-1" in notice.text  # Vietnamese, the default


def test_a_release_the_broker_did_not_take_is_audited_as_not_sent(
    door_client: TestClient, store: Store, releaser: Releaser
) -> None:
    releaser.answer = "the collector is not connected to the broker"
    csrf = log_in(door_client, "admin")
    answer = door_client.post(f"/gates/{GATE}/release", data={"csrf_token": csrf})
    assert answer.headers["location"] == f"/?door=failed&gate={GATE}"
    not_sent, asked = door_rows(store)
    assert asked[2]["release"] == "dashboard" and "not_sent" not in asked[2]
    assert not_sent[2]["not_sent"] == "the collector is not connected to the broker"


def test_a_viewer_gets_403_and_no_button(
    door_client: TestClient, store: Store, releaser: Releaser
) -> None:
    csrf = log_in(door_client, "viewer")
    assert "/release" not in door_client.get("/").text
    answer = door_client.post(f"/gates/{GATE}/release", data={"csrf_token": csrf})
    assert answer.status_code == 403
    assert releaser.calls == [] and door_rows(store) == []


def test_a_managers_post_without_the_csrf_token_is_refused(
    door_client: TestClient, store: Store, releaser: Releaser
) -> None:
    csrf = log_in(door_client, "manager")
    for data in ({}, {"csrf_token": csrf + "x"}):
        answer = door_client.post(f"/gates/{GATE}/release", data=data)
        assert answer.status_code == 403
    assert releaser.calls == [] and door_rows(store) == []


def test_an_unknown_gate_is_404(door_client: TestClient, store: Store, releaser: Releaser) -> None:
    csrf = log_in(door_client, "manager")
    for gate in ("gate-never-seen", "not%20an%20id"):
        answer = door_client.post(f"/gates/{gate}/release", data={"csrf_token": csrf})
        assert answer.status_code == 404
    assert releaser.calls == [] and door_rows(store) == []


def test_without_a_collector_there_is_no_button_and_the_route_answers_503(
    store: Store, clock: MovableClock
) -> None:
    with TestClient(web_app(store, clock, None), follow_redirects=False) as client:
        csrf = log_in(client, "manager")
        assert "/release" not in client.get("/").text
        answer = client.post(
            f"/gates/{GATE}/release", data={"csrf_token": csrf}, headers={"accept-language": "en"}
        )
        assert answer.status_code == 503
        assert "collector" in answer.text
    assert door_rows(store) == []
