"""The `logs` topic's limit at the gate (device/uplink/gate_logs.py): ten lines at once, then ten
a minute; the lines held back counted in the next message that goes out."""

from __future__ import annotations

from datetime import UTC, datetime

from device.system.log_ring import LogRecordLine
from device.uplink.gate_logs import LogUplink, TokenBucket
from protocol.messages import GateLogs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line(n: int) -> LogRecordLine:
    return LogRecordLine(datetime(2026, 3, 2, tzinfo=UTC), "ERROR", "gatescan.x", f"line {n}")


def test_ten_at_once_then_ten_a_minute_and_the_rest_counted() -> None:
    clock = Clock()
    sent: list[GateLogs] = []
    logs = LogUplink("gate-1", sent.append, clock=clock)
    for n in range(30):
        logs.heard(line(n))
    first = logs.flush()
    assert first is not None and [x.message for x in first.lines] == [
        f"line {n}" for n in range(10)
    ]
    assert first.suppressed == 20
    clock.now += 3.0
    logs.heard(line(30))
    assert logs.flush() is None, "under a token in 3 s: held back"
    clock.now += 60.0
    for n in range(31, 45):
        logs.heard(line(n))
    second = logs.flush()
    assert second is not None and len(second.lines) == 10 and second.suppressed == 1 + 4
    assert sent == [first, second]


def test_a_token_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(1.0, 2, clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 1.0
    assert [bucket.take() for _ in range(2)] == [True, False]
