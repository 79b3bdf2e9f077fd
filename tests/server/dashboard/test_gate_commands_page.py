"""A gate's page (pages.py `gate_page`, `gate_command`; issue 17): a manager's buttons write a
remote command for the collector (server/store/gate_commands.py), audited with the gate's site;
a viewer sees the answers and logs but no buttons and gets 403 on a POST; a POST without the
CSRF token is refused; a gate of another site is not found (404) on its page, and 403 on a
POST; the gate's own text is escaped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from protocol.messages import CommandAnswer, LogLine, Status
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.gate_commands import CommandRequest, GateCommands
from tests.support.web import FAST_HASHER, PASSWORD, START, MovableClock, log_in

GATE, ANNEX_GATE = "gate-1", "gate-annex"
MARKUP = '<script>alert("x")</script>'


@pytest.fixture
def gate_client(store: Store, clock: MovableClock) -> Iterator[TestClient]:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)
    accounts.add_user("hq-manager", Role.MANAGER, PASSWORD, sites=["hq"])
    store.record_status(GATE, Status(state="online", ts=START, version="t", site_id="hq"), START)
    store.record_status(
        ANNEX_GATE, Status(state="online", ts=START, version="t", site_id="annex"), START
    )
    app = create_web_app(
        store, WebSettings(), clock=clock, monotonic=clock.monotonic, hasher=FAST_HASHER
    )
    with TestClient(app, follow_redirects=False) as client:
        yield client


def test_a_manager_asks_a_gate_for_a_selftest_audited_with_its_site(
    gate_client: TestClient, store: Store
) -> None:
    csrf = log_in(gate_client, "manager")
    page = gate_client.get(f"/gates/{GATE}")
    assert page.status_code == 200 and 'data-action="selftest_gpio"' in page.text
    answer = gate_client.post(
        f"/gates/{GATE}/command",
        data={"csrf_token": csrf, "action": "selftest_gpio", "include_relay": "true"},
    )
    assert answer.status_code == 303 and answer.headers["location"].startswith(f"/gates/{GATE}?")
    [row] = GateCommands(store.engine).recent(GATE)
    assert (row.action, row.args, row.status, row.site_id) == (
        "selftest_gpio",
        {"include_relay": True},
        "pending",
        "hq",
    )
    [audit] = AuditLog(store.engine).rows(action="command")
    assert (audit.actor, audit.subject, audit.site_id) == ("manager", GATE, "hq")
    assert audit.details["command_id"] == row.command_id
    # include_relay means nothing to another action: never sent with it.
    gate_client.post(
        f"/gates/{GATE}/command",
        data={"csrf_token": csrf, "action": "identify", "include_relay": "true"},
    )
    assert GateCommands(store.engine).recent(GATE)[0].args == {}


def test_the_answers_and_logs_are_shown_escaped(
    gate_client: TestClient, store: Store, clock: MovableClock
) -> None:
    rows = GateCommands(store.engine)
    csrf = log_in(gate_client, "manager")
    gate_client.post(f"/gates/{GATE}/command", data={"csrf_token": csrf, "action": "send_logs"})
    [sent] = rows.claim_pending(clock.now + timedelta(seconds=1))
    line = LogLine(ts=START, level="ERROR", logger="gatescan.test", message=MARKUP)
    answer = CommandAnswer(
        command_id=sent.command_id, device_id=GATE, action="send_logs", status="done",
        detail=MARKUP, ts=START, lines=[line],
    )  # fmt: skip
    assert rows.record_answer(GATE, answer, START)
    rows.add_logs(GATE, [line], START)
    page = gate_client.get(f"/gates/{GATE}").text
    assert MARKUP not in page
    assert page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == 3, page


def test_a_viewer_sees_no_buttons_and_may_not_post(gate_client: TestClient, store: Store) -> None:
    csrf = log_in(gate_client, "viewer")
    page = gate_client.get(f"/gates/{GATE}")
    assert page.status_code == 200 and "/command" not in page.text
    answer = gate_client.post(
        f"/gates/{GATE}/command", data={"csrf_token": csrf, "action": "identify"}
    )
    assert answer.status_code == 403
    assert GateCommands(store.engine).recent(GATE) == []


def test_no_csrf_token_no_command(gate_client: TestClient, store: Store) -> None:
    log_in(gate_client, "manager")
    answer = gate_client.post(f"/gates/{GATE}/command", data={"action": "identify"})
    assert answer.status_code == 403
    assert GateCommands(store.engine).recent(GATE) == []


def test_another_sites_gate_an_unknown_gate_or_action(
    gate_client: TestClient, store: Store
) -> None:
    csrf = log_in(gate_client, "hq-manager")
    assert gate_client.get(f"/gates/{ANNEX_GATE}").status_code == 404  # no telling
    post = gate_client.post(
        f"/gates/{ANNEX_GATE}/command", data={"csrf_token": csrf, "action": "identify"}
    )
    assert post.status_code == 403
    assert gate_client.get("/gates/gate-never-seen").status_code == 404
    # push_config and update come from their own forms: never an empty push from a button.
    for action in ("release_door", "format_disk", "push_config", "update"):
        post = gate_client.post(
            f"/gates/{GATE}/command", data={"csrf_token": csrf, "action": action}
        )
        assert post.status_code == 404
    assert GateCommands(store.engine).recent(ANNEX_GATE) == []
    assert GateCommands(store.engine).recent(GATE) == []


# --- the settings form (push_config) ----------------------------------------------------------


def pushed_earlier(store: Store, settings: dict[str, object], at_s: float = -60) -> None:
    """A push the gate answered `done`: the settings it runs over its file."""
    rows = GateCommands(store.engine)
    command_id = f"push-{at_s:g}-0000"
    rows.request(
        CommandRequest(
            command_id=command_id, device_id=GATE, site_id="hq", action="push_config",
            args={"settings": settings}, requested_by="manager",
            requested_at=START + timedelta(seconds=at_s),
        )
    )  # fmt: skip
    rows.claim_pending(START + timedelta(seconds=at_s))
    done = CommandAnswer(
        command_id=command_id, device_id=GATE, action="push_config", status="done",
        detail="applied live", ts=START,
    )  # fmt: skip
    assert rows.record_answer(GATE, done, START + timedelta(seconds=at_s))


def settings_form(**fields: str | list[str]) -> dict[str, str | list[str]]:
    return {key.replace("__", "."): value for key, value in fields.items()}


def test_a_manager_pushes_settings_read_from_the_form_and_checked_first(
    gate_client: TestClient, store: Store
) -> None:
    csrf = log_in(gate_client, "manager")
    page = gate_client.get(f"/gates/{GATE}").text
    assert 'id="settings-form"' in page and page.count("<tr data-key=") == 9
    form = settings_form(
        direction="out",
        policy__mode="access",
        policy__accept=["pass", "cccd"],
        decoder__repeat_window="1,5",  # as Vietnamese writes it
        camera__roi="0.25 0 0.5 1",
        mqtt__telemetry_interval="",  # the file's
    )
    answer = gate_client.post(f"/gates/{GATE}/settings", data={"csrf_token": csrf, **form})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/gates/{GATE}?sent=push_config"
    [row] = GateCommands(store.engine).recent(GATE)
    assert (row.action, row.status, row.site_id) == ("push_config", "pending", "hq")
    assert row.args == {
        "settings": {
            "direction": "out",
            "policy.mode": "access",
            "policy.accept": ["cccd", "pass"],
            "decoder.repeat_window": 1.5,
            "camera.roi": [0.25, 0, 0.5, 1],
        }
    }
    [audit] = AuditLog(store.engine).rows(action="command")
    assert (audit.actor, audit.site_id, audit.details["action"]) == ("manager", "hq", "push_config")


def test_a_form_the_gate_s_model_refuses_is_shown_again_with_its_problems(
    gate_client: TestClient, store: Store
) -> None:
    csrf = log_in(gate_client, "manager")
    form = settings_form(
        decoder__repeat_window="9999",
        camera__roi=MARKUP,
        camera__decode_scale="abc",
        direction="sideways",
    )
    answer = gate_client.post(
        f"/gates/{GATE}/settings",
        data={"csrf_token": csrf, **form},
        headers={"accept-language": "en"},
    )
    assert answer.status_code == 400
    assert "direction: choose one of in, out, not &#39;sideways&#39;" in answer.text
    assert "camera.decode_scale: not a number: &#39;abc&#39;" in answer.text
    assert MARKUP not in answer.text and "&lt;script&gt;" in answer.text  # typed, shown escaped
    assert GateCommands(store.engine).recent(GATE) == []

    # Readable, but out of the model's range: the gate's own check, before anything is sent.
    form = settings_form(decoder__repeat_window="9999", camera__roi="0.5, 0, 0.9, 1")
    answer = gate_client.post(f"/gates/{GATE}/settings", data={"csrf_token": csrf, **form})
    assert answer.status_code == 400
    assert "decoder.repeat_window: must be at most 600, got 9999" in answer.text
    assert "camera.roi: x + width and y + height must be at most 1" in answer.text
    assert 'value="9999"' in answer.text, "what was typed is shown again"
    assert GateCommands(store.engine).recent(GATE) == []


def test_the_form_shows_the_push_the_gate_runs_and_a_technician_keeps_the_managers_keys(
    gate_client: TestClient, store: Store
) -> None:
    pushed_earlier(store, {"policy.mode": "access", "decoder.repeat_window": 2})
    csrf = log_in(gate_client, "technician")
    page = gate_client.get(f"/gates/{GATE}").text
    assert '<option value="access" selected>' in page
    assert 'name="decoder.repeat_window" id="setting-6" value="2"' in page
    assert 'name="policy.mode" id="setting-2" disabled' in page

    form = settings_form(decoder__repeat_window="4", direction="out")  # no policy: disabled
    answer = gate_client.post(f"/gates/{GATE}/settings", data={"csrf_token": csrf, **form})
    assert answer.status_code == 303
    newest = GateCommands(store.engine).recent(GATE)[0]
    assert newest.args["settings"] == {
        "direction": "out",
        "decoder.repeat_window": 4,
        "policy.mode": "access",  # kept as the manager pushed it
    }
    forged = settings_form(policy__mode="log", decoder__repeat_window="4")
    answer = gate_client.post(f"/gates/{GATE}/settings", data={"csrf_token": csrf, **forged})
    assert answer.status_code == 403 and "policy.mode" in answer.text
    assert len(GateCommands(store.engine).recent(GATE)) == 2


def test_a_viewer_has_no_settings_form_and_may_not_push(
    gate_client: TestClient, store: Store
) -> None:
    csrf = log_in(gate_client, "viewer")
    assert 'id="settings-form"' not in gate_client.get(f"/gates/{GATE}").text
    answer = gate_client.post(
        f"/gates/{GATE}/settings", data={"csrf_token": csrf, "direction": "out"}
    )
    assert answer.status_code == 403
    gate_client.cookies.clear()
    csrf = log_in(gate_client, "hq-manager")
    answer = gate_client.post(
        f"/gates/{ANNEX_GATE}/settings", data={"csrf_token": csrf, "direction": "out"}
    )
    assert answer.status_code == 403
    assert GateCommands(store.engine).recent(GATE) == []
    assert GateCommands(store.engine).recent(ANNEX_GATE) == []


def test_a_command_no_gate_answered_shows_as_no_answer_after_a_minute(
    gate_client: TestClient, store: Store, clock: MovableClock
) -> None:
    """An older gate refuses a newer action as malformed without answering, and an offline gate
    answers nothing: 60 s after it was sent (the gate's age rule is 30 s), the page says so."""
    rows = GateCommands(store.engine)
    csrf = log_in(gate_client, "manager")
    gate_client.post(f"/gates/{GATE}/command", data={"csrf_token": csrf, "action": "identify"})
    [sent] = rows.claim_pending(clock.now)

    def shown() -> tuple[str, str]:
        page = gate_client.get(f"/gates/{GATE}").text
        row = page.split(f'data-command="{sent.command_id}" data-status="')[1]
        return row.split('"')[0], row

    clock.advance(59)
    status, row = shown()
    assert status == "sent" and "Cổng không trả lời" not in row
    clock.advance(1)
    status, row = shown()
    assert status == "no_answer"
    assert (
        "Cổng không trả lời: có thể cổng đang ngoại tuyến, hoặc chạy phiên bản cũ chưa có lệnh này."
        in row
    )
    assert "badge-offline" in row.split("</tr>")[0]
    gate_client.cookies.set("gatescan_lang", "en")
    _, row = shown()
    assert "The gate did not answer: it may be offline or older than this action." in row
    stored = rows.get(sent.command_id)
    assert stored is not None and stored.status == "sent"  # read so, never written


def test_the_gate_page_s_live_region_holds_its_answers_for_its_own_sites_only(
    gate_client: TestClient, store: Store, clock: MovableClock
) -> None:
    rows = GateCommands(store.engine)
    csrf = log_in(gate_client, "hq-manager")
    page = gate_client.get(f"/gates/{GATE}").text
    assert f'data-live-src="/live/gates/{GATE}"' in page
    gate_client.post(f"/gates/{GATE}/command", data={"csrf_token": csrf, "action": "identify"})
    [sent] = rows.claim_pending(clock.now)
    fragment = gate_client.get(f"/live/gates/{GATE}")
    assert fragment.status_code == 200 and 'id="answers-table"' in fragment.text
    assert f'data-command="{sent.command_id}" data-status="sent"' in fragment.text
    answer = CommandAnswer(
        command_id=sent.command_id, device_id=GATE, action="identify", status="done",
        detail=MARKUP, ts=START,
    )  # fmt: skip
    assert rows.record_answer(GATE, answer, START)
    fragment = gate_client.get(f"/live/gates/{GATE}").text
    assert f'data-command="{sent.command_id}" data-status="done"' in fragment
    assert MARKUP not in fragment and "&lt;script&gt;" in fragment
    assert "<html" not in fragment, "the part alone, not a page"
    for other in (ANNEX_GATE, "gate-never-seen", "Bad Id!"):
        assert gate_client.get(f"/live/gates/{other}").status_code == 404
