"""The updates page (server/dashboard/rollout/; issue 17) on the real store, SQLite and
PostgreSQL, through the dashboard app: who may roll out and to which gates, the plan's results
per gate, the canary holding the rest back until it runs the release (and stopping them when it
fails or never answers), the commands written for the collector with the bundle's URL, the
audit rows, the bundles served for the gates' updaters, and the gates' own text escaped.

The gates' side is what the collector would store: their status and telemetry
(`record_status`, `record_telemetry`) and their answers to the commands (`claim_pending`,
`record_answer`); tests/device/update/test_remote_update.py runs that side for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from protocol.messages import CommandAnswer, Status, Telemetry, UpdateResult
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.rollout.progress import RolloutTask, advance
from server.dashboard.rollout.records import RolloutRows
from server.dashboard.settings import WebSettings
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.gate_commands import CommandRow, GateCommands
from tests.support.waiting import wait_until
from tests.support.web import FAST_HASHER, PASSWORD, START, MovableClock, log_in

URL = "https://dashboard.example.com/releases"
BUNDLE = "gatescan-0.3.0.release.tar"
MARKUP = '<script>alert("x")</script>'
HQ_GATES = {"gate-1": "0.2.0", "gate-2": "0.2.0", "gate-3": "0.3.0", "gate-4": "0.2.0"}


def report(store: Store, gate: str, version: str, when: Any, site: str = "hq", **more: Any) -> None:
    """The gate's status and telemetry as the collector stores them."""
    store.record_status(gate, Status(state="online", ts=when, version=version, site_id=site), when)
    telemetry = Telemetry(
        ts=when, uptime_s=5.0, fps=10.0, decode_ms=3.0, outbox_depth=0, clock_synced=True,
        version=version, **more,
    )  # fmt: skip
    store.record_telemetry(gate, telemetry, when)


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    folder = tmp_path / "releases"
    folder.mkdir()
    for name in (BUNDLE, "gatescan-0.2.0.release.tar", "notes.txt"):
        (folder / name).write_bytes(b"bundle " + name.encode())
    return folder


@pytest.fixture
def updates(
    store: Store, clock: MovableClock, releases: Path
) -> Iterator[tuple[TestClient, Store, MovableClock]]:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)
    accounts.add_user("hq-manager", Role.MANAGER, PASSWORD, sites=["hq"])
    accounts.add_user("hq-tech", Role.TECHNICIAN, PASSWORD, sites=["hq"])
    for gate, version in HQ_GATES.items():
        report(store, gate, version, START)
    store.record_status("gate-4", Status(state="offline", ts=START, site_id="hq"), START)
    report(store, "gate-annex", "0.2.0", START, site="annex")
    settings = WebSettings(releases_dir=releases, releases_url=URL)
    app = create_web_app(store, settings, clock=clock, monotonic=clock.monotonic,
                         hasher=FAST_HASHER)  # fmt: skip
    clock.advance(5)
    with TestClient(app, follow_redirects=False) as client:
        yield client, store, clock


def roll_out(client: TestClient, csrf: str, **form: Any) -> int:
    fields = {"csrf_token": csrf, "version": "0.3.0"} | form
    answer = client.post("/updates", data=fields)
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].rsplit("=", 1)[1])


def results(store: Store, rollout_id: int) -> dict[str, str]:
    return {g.device_id: g.result for g in RolloutRows(store.engine).gates(rollout_id)}


def sent_command(store: Store, gate: str) -> CommandRow:
    [row] = [r for r in GateCommands(store.engine).recent(gate) if r.action == "update"]
    return row


def gate_accepts(store: Store, gate: str, clock: MovableClock) -> None:
    """The collector sends the command and the gate answers `accepted`."""
    rows = GateCommands(store.engine)
    rows.claim_pending(clock.now)
    row = sent_command(store, gate)
    answer = CommandAnswer(
        command_id=row.command_id, device_id=gate, action="update", status="accepted",
        detail="asked the updater for 0.3.0", ts=clock.now,
    )  # fmt: skip
    assert rows.record_answer(gate, answer, clock.now)


@pytest.mark.parametrize("role", ["viewer", "tracer"])
def test_a_viewer_or_a_tracer_may_neither_see_nor_start_updates(
    updates: tuple[TestClient, Store, MovableClock], role: str
) -> None:
    client, store, _ = updates
    csrf = log_in(client, role)
    assert client.get("/updates").status_code == 403
    assert client.post("/updates", data={"csrf_token": csrf, "version": "0.3.0", "all": "true"})\
        .status_code == 403  # fmt: skip
    assert RolloutRows(store.engine).recent(None) == []
    assert "/updates" not in client.get("/").text  # not in the menu either


def test_the_page_lists_only_the_accounts_sites_gates_and_the_bundles_on_offer(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, _, _ = updates
    log_in(client, "hq-tech")
    page = client.get("/updates")
    assert page.status_code == 200
    for gate in HQ_GATES:
        assert f'data-gate="{gate}"' in page.text
    assert "gate-annex" not in page.text
    assert '<option value="0.3.0">' in page.text and '<option value="0.2.0">' in page.text
    assert 'href="/updates"' in page.text  # the menu's entry


def test_a_canary_first_rollout_sends_the_rest_only_once_the_canary_runs_the_release(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, store, clock = updates
    csrf = log_in(client, "hq-manager")
    rollout_id = roll_out(
        client, csrf, all="true", only_outdated="true", skip_offline="true", canary="true"
    )
    assert results(store, rollout_id) == {
        "gate-1": "sent",  # the canary
        "gate-2": "waiting",
        "gate-3": "skipped",  # already at 0.3.0
        "gate-4": "skipped",  # offline
    }  # gate-annex is another site's: not in it at all
    canary = sent_command(store, "gate-1")
    assert (canary.args, canary.site_id, canary.requested_by) == (
        {"version": "0.3.0", "source": f"{URL}/{BUNDLE}"},
        "hq",
        "hq-manager",
    )
    assert [r.action for r in GateCommands(store.engine).recent("gate-2")] == []
    [audit] = AuditLog(store.engine).rows(action="update")
    expected = ("hq-manager", "hq", f"rollout {rollout_id}")
    assert (audit.actor, audit.site_id, audit.subject) == expected
    assert audit.details["to_send"] == ["gate-1", "gate-2"]
    assert audit.details["skipped"] == {"gate-3": "already at 0.3.0", "gate-4": "offline"}

    gate_accepts(store, "gate-1", clock)
    clock.advance(60)
    advance(store, clock.now)
    assert results(store, rollout_id)["gate-2"] == "waiting"  # the canary has not said yet
    report(store, "gate-1", "0.3.0", clock.now)  # restarted on the new release
    clock.advance(5)
    page = client.get("/updates")  # the page moves the rollout on, as the loop does
    assert results(store, rollout_id) == {
        "gate-1": "updated",
        "gate-2": "sent",
        "gate-3": "skipped",
        "gate-4": "skipped",
    }
    assert sent_command(store, "gate-2").args["version"] == "0.3.0"
    assert f'data-rollout="{rollout_id}" data-phase="rest"' in page.text

    gate_accepts(store, "gate-2", clock)
    failed = UpdateResult(outcome="update_failed", version="0.3.0", from_version="0.2.0",
                          reason="no processed frame within 60 s", at=clock.now)  # fmt: skip
    report(store, "gate-2", "0.2.0", clock.now, update_result=failed)
    clock.advance(5)
    advance(store, clock.now)
    assert results(store, rollout_id)["gate-2"] == "update_failed"
    rollout = RolloutRows(store.engine).get(rollout_id)
    assert rollout is not None and rollout.phase == "done"
    [gate_2] = [g for g in RolloutRows(store.engine).gates(rollout_id) if g.device_id == "gate-2"]
    assert gate_2.detail == "update_failed: no processed frame within 60 s"


def test_a_canary_that_fails_or_never_answers_keeps_the_rest_from_being_sent(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, store, clock = updates
    csrf = log_in(client, "admin")
    first = roll_out(client, csrf, gate=["gate-1", "gate-2", "gate-annex"], canary="true",
                     only_outdated="true", skip_offline="true")  # fmt: skip
    # By site, then id: annex's gate first.
    assert results(store, first) == {
        "gate-annex": "sent",
        "gate-1": "waiting",
        "gate-2": "waiting",
        "gate-3": "skipped",
        "gate-4": "skipped",
    }
    store_refusal = GateCommands(store.engine)
    store_refusal.claim_pending(clock.now)
    command = sent_command(store, "gate-annex")
    refused = CommandAnswer(
        command_id=command.command_id, device_id="gate-annex", action="update",
        status="refused", detail="source: the bundle's http(s) URL is needed", ts=clock.now,
    )  # fmt: skip
    assert store_refusal.record_answer("gate-annex", refused, clock.now)
    advance(store, clock.now)
    assert results(store, first) == {
        "gate-annex": "update_failed",
        "gate-1": "not_sent",
        "gate-2": "not_sent",
        "gate-3": "skipped",
        "gate-4": "skipped",
    }
    assert {r.action for r in GateCommands(store.engine).recent("gate-1")} == set()
    audits = AuditLog(store.engine).rows(action="update")
    assert sorted(a.site_id for a in audits) == ["annex", "hq"]  # one row per site it touches

    clock.advance(10)
    second = roll_out(client, csrf, gate=["gate-1", "gate-2"], canary="true",
                      only_outdated="true", skip_offline="true")  # fmt: skip
    assert results(store, second)["gate-1"] == "sent"
    gate_accepts(store, "gate-1", clock)
    clock.advance(901)  # the gate's telemetry never tells of 0.3.0
    advance(store, clock.now)
    found = {g.device_id: (g.result, g.detail) for g in RolloutRows(store.engine).gates(second)}
    assert found["gate-1"] == ("no_answer", "no result within 900 s")
    assert found["gate-2"] == ("not_sent", "the canary gate-1: no_answer")


def test_without_canary_every_selected_gate_is_sent_at_once_offline_ones_too_when_asked(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, store, _ = updates
    csrf = log_in(client, "hq-manager")
    rollout_id = roll_out(client, csrf, gate=["gate-1", "gate-3", "gate-4", "gate-annex"])
    assert results(store, rollout_id) == {
        "gate-1": "sent",
        "gate-2": "skipped",  # not selected
        "gate-3": "skipped",  # already at the target, whatever the options
        "gate-4": "sent",  # offline, and skip_offline not asked
    }  # gate-annex: not this manager's, ignored
    assert GateCommands(store.engine).recent("gate-annex") == []


def test_a_version_not_on_offer_or_no_gate_of_ones_own_is_refused(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, store, _ = updates
    csrf = log_in(client, "hq-manager")
    bad = client.post("/updates", data={"csrf_token": csrf, "version": "9.9.9", "all": "true"})
    assert bad.status_code == 400
    none = client.post("/updates", data={"csrf_token": csrf, "version": "0.3.0",
                                         "gate": "gate-annex"})  # fmt: skip
    assert none.status_code == 400
    no_token = client.post("/updates", data={"version": "0.3.0", "all": "true"})
    assert no_token.status_code == 403
    assert RolloutRows(store.engine).recent(None) == []


def test_the_bundles_are_served_to_gates_without_a_login_and_nothing_else_is(
    updates: tuple[TestClient, Store, MovableClock], releases: Path
) -> None:
    client, _, _ = updates
    answer = client.get(f"/releases/{BUNDLE}")
    assert answer.status_code == 200 and answer.content == b"bundle " + BUNDLE.encode()
    (releases / "gatescan-0.4.0.release.tar").symlink_to(releases / BUNDLE)
    for name in ("notes.txt", "gatescan-0.4.0.release.tar", "gatescan-9.9.9.release.tar",
                 "..%2Fserver.db"):  # fmt: skip
        assert client.get(f"/releases/{name}").status_code == 404, name


def test_a_gates_text_holding_markup_is_escaped(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, store, clock = updates
    result = UpdateResult(outcome="update_refused", version="0.3.0", reason=MARKUP, at=clock.now)
    report(store, "gate-1", "0.2.0", clock.now, update_result=result)
    store.record_status(
        "gate-1",
        Status(state="online", ts=clock.now, version="0.2.0", site_id="hq", location=MARKUP),
        clock.now,
    )
    log_in(client, "hq-manager")
    page = client.get("/updates").text
    assert MARKUP not in page
    assert page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == 2, page


def test_no_releases_url_no_rollout(store: Store, clock: MovableClock, releases: Path) -> None:
    Accounts(store.engine, hasher=FAST_HASHER, clock=clock).add_user("admin", Role.ADMIN, PASSWORD)
    app = create_web_app(store, WebSettings(releases_dir=releases), clock=clock,
                         monotonic=clock.monotonic, hasher=FAST_HASHER)  # fmt: skip
    with TestClient(app, follow_redirects=False) as client:
        csrf = log_in(client, "admin")
        assert 'id="no-releases"' in client.get("/updates").text
        answer = client.post("/updates", data={"csrf_token": csrf, "version": "0.3.0",
                                               "all": "true"})  # fmt: skip
        assert answer.status_code == 409


def test_gatescan_servers_loop_moves_a_rollout_on_without_anyone_looking(
    updates: tuple[TestClient, Store, MovableClock],
) -> None:
    client, store, clock = updates
    csrf = log_in(client, "hq-manager")
    rollout_id = roll_out(client, csrf, gate=["gate-1", "gate-2"], canary="true")
    gate_accepts(store, "gate-1", clock)
    report(store, "gate-1", "0.3.0", clock.now)
    task = RolloutTask(store, every_s=0.05, clock=clock)
    task.start()
    try:
        wait_until(lambda: results(store, rollout_id)["gate-2"] == "sent", 10, "the rest sent")
    finally:
        task.stop()
    assert results(store, rollout_id)["gate-1"] == "updated"
