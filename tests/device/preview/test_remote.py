"""The server's requests at the gate: a fresh one starts, renews and stops a session; a stale
one, one from the future and a malformed one start nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from device.preview.remote import RemotePreview
from device.preview.tap import PreviewTap
from protocol.preview.wire import PreviewRequest

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def request(action: str = "start", *, age_s: float = 0.0, session: str = "sess-000001") -> bytes:
    return PreviewRequest(
        session_id=session,
        action="start" if action == "start" else "stop",
        issued_at=NOW - timedelta(seconds=age_s),
        ttl_s=60,
        fps=2,
        by="alice",
    ).to_json()


def test_a_fresh_request_starts_and_stops_a_session() -> None:
    tap = PreviewTap()
    remote = RemotePreview(tap, publish=lambda payload: None, now=lambda: NOW)
    try:
        assert remote.handle(request())
        assert tap.sessions() == 1 and tap.active
        assert remote.handle(request(age_s=5))  # a renewal
        assert tap.sessions() == 1
        assert remote.handle(request("stop"))
        assert tap.sessions() == 0
    finally:
        tap.close()


def test_stale_future_and_malformed_requests_start_nothing() -> None:
    tap = PreviewTap()
    remote = RemotePreview(tap, publish=lambda payload: None, now=lambda: NOW)
    assert not remote.handle(request(age_s=31))
    assert not remote.handle(request(age_s=-31))
    assert not remote.handle(b'{"session_id": "x", "action": "start"}')
    assert not remote.handle(b"\xff not json")
    bad = request().replace(b'"start"', b'"record"')
    assert not remote.handle(bad)
    assert tap.sessions() == 0 and not tap.active
