"""The gate's view of who is inside: the server's list, the gate's own later passages over it,
reconciled by seq."""

from __future__ import annotations

from device.verdict.presence import Presence
from protocol.verdicts import Direction

AN, BINH, CHI = b"a" * 16, b"b" * 16, b"c" * 16


def test_a_gate_alone_knows_who_came_in_and_went_out_through_it() -> None:
    presence = Presence()
    presence.record(1, AN, Direction.IN)
    presence.record(2, BINH, Direction.IN)
    presence.record(3, AN, Direction.OUT)
    assert not presence.is_inside(AN) and presence.is_inside(BINH)
    assert presence.count() == 1


def test_the_servers_list_wins_for_passages_it_holds_and_later_ones_lie_over_it() -> None:
    presence = Presence()
    presence.record(5, AN, Direction.IN)
    presence.record(6, BINH, Direction.IN)
    # The server holds this gate's passages up to seq 5, and Chi came in at another gate;
    # Binh's passage (6) has not reached it yet.
    presence.update(frozenset({AN, CHI}), own_seq=5)
    assert {presence.is_inside(x) for x in (AN, BINH, CHI)} == {True}
    assert presence.count() == 3
    # An left by another gate: the server's next list says so, and this gate had nothing later.
    presence.update(frozenset({BINH, CHI}), own_seq=6)
    assert not presence.is_inside(AN) and presence.count() == 2
    # A passage the list already holds is not laid over it again.
    presence.record(6, BINH, Direction.OUT)
    assert presence.is_inside(BINH)


def test_a_gates_own_exit_after_the_list_counts_until_the_list_holds_it() -> None:
    presence = Presence()
    presence.update(frozenset({AN}), own_seq=None)
    presence.record(0, AN, Direction.OUT)
    assert not presence.is_inside(AN) and presence.count() == 0
    presence.update(frozenset(), own_seq=0)
    assert not presence.is_inside(AN) and presence.count() == 0
