"""Per-gate limits (token buckets) on a fake clock: what passes, what is dropped, and what the
limits do to a legitimate gate's backlog flush, whose dropped events come back as resends."""

from __future__ import annotations

import pytest

from server.collector.limits import BURST_S, SWEEP_EVERY_S, GateLimiter, GateLimits

EVENT_BYTES = 500  # about a gate's event


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(messages: float, bytes_per_minute: float) -> tuple[GateLimiter, FakeClock]:
    clock = FakeClock()
    return GateLimiter(GateLimits(messages, bytes_per_minute), clock), clock


def passed(gate: GateLimiter, device_id: str, count: int, size: int = EVENT_BYTES) -> int:
    return sum(gate.allow(device_id, size) for _ in range(count))


def test_a_gate_may_send_a_bursts_worth_at_once_then_its_rate() -> None:
    gate, clock = limiter(messages=100, bytes_per_minute=0)

    assert passed(gate, "gate-01", 1500) == 100 * BURST_S  # 10 s worth at once, no more
    clock.now += 0.5
    assert passed(gate, "gate-01", 1000) == 50  # then 100 a second
    clock.now += 3600
    assert passed(gate, "gate-01", 5000) == 100 * BURST_S  # refilled, never beyond the burst


def test_bytes_per_minute_stop_large_messages_long_before_the_message_limit() -> None:
    gate, clock = limiter(messages=1000, bytes_per_minute=6 * 1024 * 1024)  # 1 MiB in 10 s
    large = 60 * 1024

    assert passed(gate, "gate-01", 300, size=large) == 17  # 1 MiB / 60 KiB
    clock.now += 60
    assert passed(gate, "gate-01", 300, size=large) == 17  # the bucket holds 10 s: no more
    clock.now += 1
    assert passed(gate, "gate-01", 10, size=large) == 1  # 100 KiB a second
    assert gate.allow("gate-01", 10) is True  # small ones still fit what is left


def test_a_message_larger_than_the_whole_bucket_passes_only_when_the_bucket_is_full() -> None:
    gate, clock = limiter(messages=0, bytes_per_minute=6000)  # 1,000 bytes in 10 s

    assert gate.allow("gate-01", 50_000) is True  # charged the whole bucket
    assert gate.allow("gate-01", 1) is False
    clock.now += 5
    assert gate.allow("gate-01", 50_000) is False
    clock.now += 5
    assert gate.allow("gate-01", 50_000) is True


def test_one_gate_over_its_limit_does_not_limit_another() -> None:
    gate, _ = limiter(messages=1, bytes_per_minute=0)

    assert passed(gate, "gate-hostile", 1000) == 10
    assert passed(gate, "gate-02", 5) == 5
    assert passed(gate, "gate-hostile", 1) == 0


def test_zero_turns_a_limit_off_and_both_off_is_no_limiter() -> None:
    gate, _ = limiter(messages=0, bytes_per_minute=0)

    assert passed(gate, "gate-01", 100_000, size=64 * 1024) == 100_000
    assert GateLimits(0, 0).off
    assert not GateLimits().off


@pytest.mark.parametrize(("messages", "size"), [(-1, 0), (0, -5), (float("nan"), 0)])
def test_a_negative_or_nan_limit_is_refused(messages: float, size: float) -> None:
    with pytest.raises(ValueError, match="0 \\(no limit\\) or more"):
        GateLimits(messages, size)


def test_gates_whose_buckets_filled_again_are_forgotten() -> None:
    gate, clock = limiter(messages=10, bytes_per_minute=0)
    for n in range(1000):  # a broker without an ACL lets anyone invent device ids
        gate.allow(f"invented-{n}", EVENT_BYTES)
    assert gate.tracked() == 1000

    clock.now += SWEEP_EVERY_S  # every bucket has filled up again
    passed(gate, "gate-01", 1)

    assert gate.tracked() == 1


def flush(gate: GateLimiter, clock: FakeClock, backlog: int, resend_after: float) -> float:
    """A gate flushing `backlog` events as its uplink does: at most 100 in flight, each one
    acked at once when it passes, a dropped one sent again `resend_after` seconds later. Time
    moves on in steps of 10 ms. Returns the seconds until every event passed."""
    window = 100
    started = clock.now
    unsent = backlog
    waiting: list[float] = []  # when each dropped event in flight is resent
    while unsent or waiting:
        due = [when for when in waiting if when <= clock.now]
        waiting = [when for when in waiting if when > clock.now]
        for _ in due:  # resends first, as the gate does
            if not gate.allow("gate-01", EVENT_BYTES):
                waiting.append(clock.now + resend_after)
        while unsent and len(waiting) < window:  # a slot is free: the next event goes
            unsent -= 1
            if not gate.allow("gate-01", EVENT_BYTES):
                waiting.append(clock.now + resend_after)
        clock.now += 0.01
    return clock.now - started


def test_a_backlog_flush_over_the_limit_loses_nothing_and_goes_at_about_the_limit() -> None:
    gate, clock = limiter(messages=1000, bytes_per_minute=32 * 1024 * 1024)

    seconds = flush(gate, clock, backlog=150_000, resend_after=10.0)

    # 10,000 at once, then 1,000 a second: 140 s for the rest. Dropped events wait in the
    # gate's window for their resend, while the bucket fills for the next burst.
    assert 140 <= seconds <= 140 * 1.25


def test_a_backlog_within_the_burst_passes_at_once() -> None:
    gate, clock = limiter(messages=1000, bytes_per_minute=32 * 1024 * 1024)

    assert flush(gate, clock, backlog=10_000, resend_after=10.0) < 0.1
