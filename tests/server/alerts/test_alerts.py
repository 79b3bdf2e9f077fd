"""Alerts (server/alerts/): problems found from the fleet, opened once and cleared once, and
delivered to a real HTTP receiver (signed JSON) and a real SMTP server with STARTTLS (aiosmtpd),
one message per delivery whatever the number of changes."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from server.alerts.delivery import (
    AlertDispatcher,
    DeliveryError,
    Route,
    SmtpSender,
    WebhookSender,
)
from server.alerts.rules import AlertRules, Expiring, GateView, Snapshot, find_problems
from server.alerts.tracker import AlertTracker, Change
from tests.support.alert_receivers import Inbox, Receiver, running_smtp

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
SECRET = b"a webhook secret of 32 bytes ok!"
MIN = timedelta(minutes=1)


def gate(name: str, **fields: object) -> GateView:
    base: dict[str, object] = {"site_id": "hq", "online": True, "offline_for_s": None}
    return GateView(device_id=name, **{**base, **fields})  # type: ignore[arg-type]


# --- finding problems ------------------------------------------------------------------------


def test_each_kind_of_problem_is_found_and_a_healthy_gate_has_none() -> None:
    snapshot = Snapshot(
        gates=[
            gate("ok", clock_synced=True, outbox=3),
            gate("down", online=False, offline_for_s=400.0, faults=("camera",)),
            gate("cam", faults=("camera",)),
            gate("clock", clock_synced=False),
            gate("backlog", outbox=900),
        ],
        dead_letters_10min=80,
        failed_logins_10min=31,
        expiring=[Expiring("the broker's certificate", "", NOW + timedelta(days=12))],
    )
    found = {p.key: p for p in find_problems(snapshot, AlertRules(), NOW)}
    assert set(found) == {
        "offline:down",  # its old camera fault is not news: it is offline
        "fault:cam:camera",
        "clock:clock",
        "outbox:backlog",
        "dead_letters",
        "logins",
        "expiry:the broker's certificate",
    }
    assert found["offline:down"].for_s == 0  # 400 s since heard: past the 5 minutes already
    assert "mất kết nối" in found["offline:down"].summary_vi
    assert "12 days" in found["expiry:the broker's certificate"].summary_en


# --- opening and clearing ----------------------------------------------------------------------


def test_a_problem_opens_once_it_lasted_and_one_gone_before_is_never_told() -> None:
    tracker = AlertTracker()
    rules = AlertRules()
    clock = find_problems(Snapshot([gate("g", clock_synced=False)]), rules, NOW)
    assert tracker.update(clock, NOW) == []
    assert tracker.update(clock, NOW + 10 * MIN) == []
    [opened] = tracker.update(clock, NOW + 15 * MIN)
    assert (opened.event, opened.alert.problem.key) == ("opened", "clock:g")
    assert tracker.update(clock, NOW + 16 * MIN) == []  # told once
    # Another problem gone after a minute (a reboot): nobody is told, now or later.
    fault = find_problems(Snapshot([gate("h", faults=("camera",))]), rules, NOW)
    assert tracker.update(clock + fault, NOW + 17 * MIN) == []
    assert tracker.update(clock, NOW + 17 * MIN + 30 * MIN / 60) == []
    assert [a.problem.key for a in tracker.open_alerts()] == ["clock:g"]


def test_a_flapping_gate_opens_one_alert_and_clears_it_once() -> None:
    tracker = AlertTracker(clear_after_s=120)
    down = find_problems(
        Snapshot([gate("g", online=False, offline_for_s=600.0)]), AlertRules(), NOW
    )
    changes: list[Change] = []
    moment = NOW
    for _ in range(10):  # down, up for 30 s, down again...
        changes += tracker.update(down, moment)
        changes += tracker.update([], moment + timedelta(seconds=30))
        moment += MIN
    changes += tracker.update([], moment + 3 * MIN)
    assert [c.event for c in changes] == ["opened", "cleared"]


def test_an_alert_is_acknowledged_and_shown_per_site() -> None:
    tracker = AlertTracker()
    down = find_problems(
        Snapshot([gate("a", online=False, offline_for_s=900.0),
                  gate("b", site_id="annex", online=False, offline_for_s=900.0)]),
        AlertRules(),
        NOW,
    )  # fmt: skip
    tracker.update(down, NOW)
    assert [a.problem.device_id for a in tracker.open_alerts(frozenset({"annex"}))] == ["b"]
    acknowledged = tracker.acknowledge("offline:a", "minh", NOW + MIN)
    assert acknowledged is not None and acknowledged.acknowledged_by == "minh"
    assert tracker.acknowledge("offline:nobody", "minh", NOW) is None


# --- a real HTTP receiver ----------------------------------------------------------------------


def forty_gates_down() -> list[Change]:
    tracker = AlertTracker()
    gates = [gate(f"gate-{n:02d}", online=False, offline_for_s=900.0) for n in range(40)]
    return tracker.update(find_problems(Snapshot(gates), AlertRules(), NOW), NOW)


def test_the_webhook_gets_one_signed_message_for_forty_changes(receiver: Receiver) -> None:
    changes = forty_gates_down()
    assert len(changes) == 40
    results = AlertDispatcher([Route(WebhookSender(receiver.url, SECRET))]).deliver(changes)
    assert results == {"webhook": None}
    [(headers, body)] = receiver.got  # one message, not forty
    stamp = headers["X-Gatescan-Timestamp"]
    expected = hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Gatescan-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert len(payload["changes"]) == 40 and payload["changes"][0]["event"] == "opened"
    assert "mất kết nối" in payload["text"]


def test_a_failed_delivery_is_kept_and_sent_with_the_next(receiver: Receiver) -> None:
    dispatcher = AlertDispatcher([Route(WebhookSender(receiver.url, SECRET))])
    receiver.answer = 503
    first = forty_gates_down()[:2]
    assert dispatcher.deliver(first) == {"webhook": "the webhook answered 503"}
    receiver.answer = 200
    later = forty_gates_down()[2:3]
    assert dispatcher.deliver(later) == {"webhook": None}
    sent = json.loads(receiver.got[-1][1])["changes"]
    assert [c["device_id"] for c in sent] == ["gate-00", "gate-01", "gate-02"]


def test_a_webhook_must_be_https_or_this_machine_and_have_a_real_secret() -> None:
    with pytest.raises(ValueError, match="https"):
        WebhookSender("http://relay.example.vn/hook", SECRET)
    with pytest.raises(ValueError, match="16 bytes"):
        WebhookSender("https://relay.example.vn/hook", b"short")


# --- a real SMTP server with STARTTLS ----------------------------------------------------------


def test_mail_goes_over_starttls_in_vietnamese_and_english(
    mail_tls: tuple[ssl.SSLContext, Path],
) -> None:
    inbox = Inbox()
    controller = running_smtp(inbox, mail_tls[0])
    try:
        sender = SmtpSender(
            "127.0.0.1", controller.port, "gatescan@example.vn", ("quanly@example.vn",),
            ca_file=mail_tls[1],
        )  # fmt: skip
        assert AlertDispatcher([Route(sender)]).deliver(forty_gates_down()) == {"e-mail": None}
    finally:
        controller.stop()
    [message] = inbox.messages
    subject = str(make_header(decode_header(str(message["Subject"]))))
    assert "40 sự cố mới" in subject and "40 new, 0 cleared" in subject
    body = message.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    assert "cổng gate-00 mất kết nối" in body and "gate gate-39 is offline" in body


def test_a_mail_server_without_starttls_is_refused_not_sent_in_clear() -> None:
    inbox = Inbox()
    controller = running_smtp(inbox, None)
    try:
        sender = SmtpSender("127.0.0.1", controller.port, "a@example.vn", ("b@example.vn",))
        with pytest.raises(DeliveryError, match="STARTTLS"):
            sender.send(forty_gates_down()[:1])
    finally:
        controller.stop()
    assert inbox.messages == []


def test_a_check_in_location_at_its_daily_cap_is_a_problem_of_its_site() -> None:
    from server.alerts.rules import CheckinsToday

    rules = AlertRules(checkins_per_location_day=100)
    snapshot = Snapshot(
        checkins=[
            CheckinsToday("loc-aaaaaaaaaa", "hq", 100),
            CheckinsToday("loc-bbbbbbbbbb", "hq", 99),
        ]
    )
    [problem] = find_problems(snapshot, rules, NOW)
    assert problem.key == "checkin_cap:loc-aaaaaaaaaa" and problem.site_id == "hq"
    assert problem.kind == "checkin_cap" and problem.device_id == "", "a location is no device"
    assert "loc-aaaaaaaaaa" in problem.summary_en and "loc-aaaaaaaaaa" in problem.summary_vi
    assert find_problems(Snapshot(), AlertRules(), NOW) == []
