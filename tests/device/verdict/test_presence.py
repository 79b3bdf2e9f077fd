"""The gate's view of who is inside: the server's list, the gate's own later passages over it,
reconciled by seq."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from device.verdict.presence import Presence
from protocol.verdicts import Direction

AN, BINH, CHI = b"a" * 16, b"b" * 16, b"c" * 16
T = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
IN, OUT = Direction.IN, Direction.OUT


def server(*inside: bytes) -> tuple[Callable[[bytes], bool], int]:
    held = frozenset(inside)
    return held.__contains__, len(held)


def test_a_gate_alone_knows_who_came_in_and_went_out_through_it() -> None:
    presence = Presence()
    presence.record(1, AN, IN, T)
    presence.record(2, BINH, IN, T)
    presence.record(3, AN, OUT, T)
    assert not presence.is_inside(AN) and presence.is_inside(BINH)
    assert presence.count() == 1


def test_the_servers_list_wins_for_passages_it_holds_and_later_ones_lie_over_it() -> None:
    presence = Presence()
    presence.record(5, AN, IN, T)
    presence.record(6, BINH, IN, T)
    # The server holds this gate's passages up to seq 5, and Chi came in at another gate;
    # Binh's passage (6) has not reached it yet.
    lookup, count = server(AN, CHI)
    presence.update(lookup, count, own_seq=5, since=T - timedelta(hours=8))
    assert all(presence.is_inside(x) for x in (AN, BINH, CHI))
    assert presence.count() == 3
    # An left by another gate: the server's next list says so; this gate had nothing later.
    lookup, count = server(BINH, CHI)
    presence.update(lookup, count, own_seq=6, since=T - timedelta(hours=8))
    assert not presence.is_inside(AN) and presence.count() == 2
    # A passage the list already holds is not laid over it again.
    presence.record(6, BINH, OUT, T)
    assert presence.is_inside(BINH)


def test_a_gates_own_exit_after_the_list_counts_until_the_list_holds_it() -> None:
    presence = Presence()
    lookup, count = server(AN)
    presence.update(lookup, count, own_seq=None, since=None)
    presence.record(0, AN, OUT, T)
    assert not presence.is_inside(AN) and presence.count() == 0
    lookup, count = server()
    presence.update(lookup, count, own_seq=0, since=None)
    assert not presence.is_inside(AN) and presence.count() == 0


def test_the_day_starts_again_at_the_sites_midnight() -> None:
    presence = Presence()
    presence.record(1, AN, IN, T - timedelta(hours=12))  # yesterday evening
    presence.record(2, BINH, IN, T)
    lookup, count = server()
    presence.update(lookup, count, own_seq=None, since=T - timedelta(hours=1))
    assert not presence.is_inside(AN) and presence.is_inside(BINH)
    assert presence.count() == 1
