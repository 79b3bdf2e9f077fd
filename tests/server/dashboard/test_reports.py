"""Fleet, entries, tracing and occupancy computed from a real store, on SQLite and on
PostgreSQL, and the audit rows that looking at people leaves."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from protocol.messages import Status, Telemetry
from protocol.verdicts import Direction, VerdictStatus
from server.accounts.users import Account, Role
from server.dashboard.reports.access import NotAllowed
from server.dashboard.reports.entries import EntryFilter, find_entries, view_entries
from server.dashboard.reports.fleet import GateStatus, fleet_status
from server.dashboard.reports.occupancy import occupancy_today
from server.dashboard.reports.tracing import trace_contacts
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.web import START, MovableClock, cccd_event, raw_event

HCMC = ZoneInfo("Asia/Ho_Chi_Minh")
VIEWER = Account("vy", Role.VIEWER, None, via="session")
MANAGER = Account("minh", Role.MANAGER, None, via="session")
ALICE, BOB, CAROL, DAN = "079190000001", "079190000002", "079190000003", "079190000004"
MIN = timedelta(minutes=1)
_GIVEN = ("Xuân", "Hạ", "Thu", "Đông")


def _add(store: Store, *events: object) -> None:
    store.add_events(list(events), received_at=START)  # type: ignore[arg-type]


# --- tracing ----------------------------------------------------------------------------------


@pytest.fixture
def traced(store: Store) -> Store:
    """Alice at gate-1 (site hq) at 10:00; around her: Bob at the same gate 30 min later,
    Carol at another gate of the same site 59 min before, Dan 61 min after (outside), and
    Eve at another site at the same minute."""
    _add(
        store,
        cccd_event(1, subject=ALICE, name="Alice Nguyễn", ts=START),
        cccd_event(2, subject=BOB, name="Bob Trần", ts=START + 30 * MIN),
        cccd_event(3, subject=CAROL, name="Carol Lê", ts=START - 59 * MIN, device="gate-2"),
        cccd_event(4, subject=DAN, name="Dan Phạm", ts=START + 61 * MIN),
        cccd_event(5, subject="079190000005", ts=START, device="gate-9", site="branch"),
        cccd_event(6, subject=ALICE, name="Alice Nguyễn", ts=START + 2 * 24 * 60 * MIN),
    )
    return store


def test_tracing_finds_who_passed_the_same_gate_or_site_within_the_window(traced: Store) -> None:
    result = trace_contacts(traced, MANAGER, ALICE, window_min=60)
    assert [v.ts for v in result.visits] == [START, START + 2 * 24 * 60 * MIN]
    first = result.visits[0]
    assert {(c.subject_id, c.same_gate) for c in first.contacts} == {(BOB, True), (CAROL, False)}
    bob = next(c for c in first.contacts if c.subject_id == BOB)
    carol = next(c for c in first.contacts if c.subject_id == CAROL)
    assert (bob.offset_min, bob.overlap_min) == (30, 90)
    assert (carol.offset_min, carol.overlap_min) == (-59, 61)
    assert result.visits[1].contacts == []
    assert [p.subject_id for p in result.people] == [BOB, CAROL]  # the closest first
    assert result.subject_name == "Alice Nguyễn"


def test_a_wider_window_reaches_further(traced: Store) -> None:
    result = trace_contacts(traced, MANAGER, ALICE, window_min=61)
    assert {p.subject_id for p in result.people} == {BOB, CAROL, DAN}


def test_tracing_is_limited_to_the_asked_period(traced: Store) -> None:
    result = trace_contacts(traced, MANAGER, ALICE, 60, since=START + MIN)
    assert len(result.visits) == 1
    assert result.people == []


def test_tracing_counts_each_person_once_across_visits(store: Store) -> None:
    _add(
        store,
        cccd_event(1, subject=ALICE, ts=START),
        cccd_event(2, subject=ALICE, ts=START + 300 * MIN),
        cccd_event(3, subject=BOB, ts=START + 5 * MIN),
        cccd_event(4, subject=BOB, ts=START + 290 * MIN),
    )
    (bob,) = trace_contacts(store, MANAGER, ALICE).people
    assert (bob.visits, bob.passages, bob.max_overlap_min, bob.same_gate) == (2, 2, 115, True)


def test_gates_without_a_site_are_only_near_themselves(store: Store) -> None:
    _add(
        store,
        cccd_event(1, subject=ALICE, site="", device="gate-1"),
        cccd_event(2, subject=BOB, site="", device="gate-2"),
    )
    assert trace_contacts(store, MANAGER, ALICE).people == []


def test_tracing_needs_a_manager_and_is_audited(traced: Store, clock: MovableClock) -> None:
    audit = AuditLog(traced.engine, clock=clock)
    with pytest.raises(NotAllowed):
        trace_contacts(traced, VIEWER, ALICE, audit=audit)
    assert audit.rows() == []
    trace_contacts(traced, MANAGER, ALICE, 45, audit=audit)
    (row,) = audit.rows()
    assert (row.actor, row.action, row.subject, row.at) == ("minh", "trace", ALICE, START)
    assert row.details["window_min"] == 45
    assert row.details["people"] == 1  # Bob; Carol was 59 min away


def test_a_tracing_window_outside_a_day_is_refused(traced: Store) -> None:
    with pytest.raises(ValueError, match="1 to 1440"):
        trace_contacts(traced, MANAGER, ALICE, window_min=0)


# --- occupancy --------------------------------------------------------------------------------


def test_occupancy_counts_people_whose_last_passage_today_was_in(store: Store) -> None:
    local_midnight = START.astimezone(HCMC).replace(hour=0, minute=0)
    _add(
        store,
        cccd_event(1, subject=ALICE, ts=local_midnight - MIN),  # yesterday
        cccd_event(2, subject=ALICE, name="Alice Nguyễn", ts=local_midnight + MIN),
        cccd_event(3, subject=BOB, ts=START),
        cccd_event(4, subject=CAROL, name="Carol Lê", ts=START),
        cccd_event(5, subject=BOB, ts=START + MIN, device="gate-out", direction=Direction.OUT),
        cccd_event(6, subject=DAN, ts=START, status=VerdictStatus.DENIED),  # did not pass
        cccd_event(
            7, subject=DAN, ts=START, device="b-out", site="branch", direction=Direction.OUT
        ),
    )
    clock = MovableClock(now=START + 10 * MIN)
    rows = {row.site_id: row for row in occupancy_today(store, HCMC, clock=clock)}
    assert (rows["hq"].ins, rows["hq"].outs, rows["hq"].inside) == (3, 1, 2)
    assert (rows["branch"].ins, rows["branch"].outs, rows["branch"].inside) == (0, 1, 0)
    assert rows["hq"].since == local_midnight
    # Latest first, masked: recognisable, never identifiable.
    carol, alice = rows["hq"].people
    assert (carol.subject_id, carol.subject_name, carol.entered_at) == (
        "********0003",
        "C*** L***",
        START,
    )
    assert (alice.subject_id, alice.entered_at) == ("********0001", local_midnight + MIN)


def test_occupancy_is_people_not_passages(store: Store) -> None:
    """Ten showings at the entrance by two people are two people inside; one who leaves and
    comes back is inside once; one who leaves is not."""
    events = [cccd_event(i, subject=ALICE, ts=START + i * MIN) for i in range(1, 6)]
    events += [cccd_event(10 + i, subject=BOB, ts=START + i * MIN) for i in range(1, 6)]
    events += [
        cccd_event(20, subject=ALICE, ts=START + 7 * MIN, device="out", direction=Direction.OUT),
        cccd_event(21, subject=ALICE, ts=START + 8 * MIN),
        cccd_event(22, subject=BOB, ts=START + 9 * MIN, device="out", direction=Direction.OUT),
        raw_event(23, "https://menu.example/pho", ts=START + 9 * MIN),
        raw_event(24, "https://menu.example/pho", ts=START + 9 * MIN),
    ]
    _add(store, *events)
    (row,) = occupancy_today(store, HCMC, clock=MovableClock(now=START + 10 * MIN))
    assert (row.ins, row.outs) == (13, 2)
    assert row.inside == 2  # Alice, back in, and the raw code shown twice (one holder); Bob left
    assert {person.credential_type for person in row.people} == {"cccd", "raw"}


def test_occupancy_starts_again_at_local_not_utc_midnight(store: Store) -> None:
    # 23:30 UTC is 06:30 the next day in Ho Chi Minh City: yesterday's (UTC) 20:00 entry is
    # 03:00 local today, an entry at 16:59 UTC was 23:59 local yesterday.
    late = START.replace(hour=23, minute=30)
    _add(
        store,
        cccd_event(1, subject=ALICE, ts=late.replace(hour=20, minute=0)),
        cccd_event(2, subject=BOB, ts=late.replace(hour=16, minute=59)),
    )
    (row,) = occupancy_today(store, HCMC, clock=MovableClock(now=late))
    assert row.ins == 1


# --- fleet ------------------------------------------------------------------------------------


def _status(state: str, **fields: object) -> Status:
    return Status.model_validate(
        {"state": state, "ts": START.isoformat(), "version": "1.2", **fields}
    )


def test_fleet_shows_where_each_gate_stands_and_flags_the_broken(store: Store) -> None:
    placement = {"site_id": "hq", "location": "Cổng chính", "direction": "in"}
    store.record_status("gate-1", _status("online", **placement), START)
    store.record_status("gate-2", _status("online", faults=["camera"]), START)
    store.record_status("gate-3", _status("offline"), START)
    store.record_status("gate-4", _status("offline"), START + 9 * MIN)
    telemetry = Telemetry(
        ts=START,
        uptime_s=5,
        fps=14.5,
        decode_ms=7.2,
        outbox_depth=3,
        clock_synced=True,
        version="1.2",
    )
    store.record_telemetry("gate-1", telemetry, START + 9 * MIN)  # heard a minute ago
    store.record_telemetry(
        "gate-2", telemetry.model_copy(update={"faults": ["camera"]}), START + 9 * MIN
    )
    _add(store, cccd_event(1, subject=ALICE), cccd_event(2, subject=BOB))
    gates = fleet_status(store, START + 10 * MIN, offline_after_s=120, tz=HCMC)
    by_id = {g.device_id: g for g in gates}
    assert [g.device_id for g in gates][:2] == ["gate-2", "gate-3"]  # flagged first
    assert by_id["gate-3"].why == ["offline"]
    assert by_id["gate-2"].why == ["fault:camera"]
    assert not by_id["gate-4"].flagged  # offline for 60 s only
    assert not by_id["gate-4"].online
    one = by_id["gate-1"]
    assert (one.site_id, one.location, one.direction) == ("hq", "Cổng chính", "in")
    assert (one.fps, one.decode_ms, one.outbox, one.clock_synced) == (14.5, 7.2, 3, True)
    assert (one.online, one.flagged, one.scans_today) == (True, False, 2)


def test_a_gate_that_said_online_and_went_quiet_is_offline_once_silent_past_the_threshold(
    store: Store,
) -> None:
    # A retained "online", then a clean disconnect (no will): the status stays "online".
    store.record_status("gate-1", _status("online"), START)

    def gate_one(now: datetime) -> GateStatus:
        [gate] = fleet_status(store, now, offline_after_s=120, tz=HCMC)
        return gate

    assert gate_one(START + 2 * MIN).online  # heard 120 s ago: still within the threshold
    quiet = gate_one(START + 10 * MIN)
    assert (quiet.online, quiet.offline_for_s, quiet.why) == (False, 600.0, ["offline"])
    heartbeat = Telemetry(
        ts=START, uptime_s=5, fps=30, decode_ms=2, outbox_depth=0, clock_synced=True, version="1"
    )
    store.record_telemetry("gate-1", heartbeat, START + 11 * MIN)
    assert gate_one(START + 11 * MIN).online  # heard again


# --- entries ----------------------------------------------------------------------------------


@pytest.fixture
def many(store: Store) -> Store:
    events = [
        cccd_event(n, subject=f"0792000{n:05d}", name=f"Người {_GIVEN[n % 4]}", ts=START + n * MIN)
        for n in range(1, 121)
    ]
    events.append(cccd_event(500, subject=ALICE, name="Alice Nguyễn", device="gate-2"))
    events.append(cccd_event(501, subject=BOB, status=VerdictStatus.DENIED, site="branch"))
    _add(store, *events)
    return store


def test_entries_are_paginated_newest_first(many: Store) -> None:
    first = find_entries(many, EntryFilter(), page=1, page_size=50)
    third = find_entries(many, EntryFilter(), page=3, page_size=50)
    assert (first.total, first.pages, first.has_next) == (122, 3, True)
    assert first.items[0].ts == START + 120 * MIN
    assert len(third.items) == 22
    assert not third.has_next
    seen = {e.event_id for p in (1, 2, 3) for e in find_entries(many, EntryFilter(), p, 50).items}
    assert len(seen) == 122


@pytest.mark.parametrize(
    ("entry_filter", "expected"),
    [
        (EntryFilter(device_id="gate-2"), {ALICE}),
        (EntryFilter(site_id="branch"), {BOB}),
        (EntryFilter(status=VerdictStatus.DENIED), {BOB}),
        (EntryFilter(person=ALICE), {ALICE}),
        (EntryFilter(person="alice"), {ALICE}),
        (EntryFilter(since=START + 119 * MIN, until=START + 120 * MIN), {"079200000119"}),
    ],
)
def test_entries_filter(many: Store, entry_filter: EntryFilter, expected: set[str]) -> None:
    page = find_entries(many, entry_filter, 1, 500)
    assert {e.subject_id for e in page.items} == expected


def test_entries_are_masked_by_default(many: Store) -> None:
    page = view_entries(many, MANAGER, EntryFilter(person=ALICE), audit=AuditLog(many.engine))
    (row,) = page.items
    assert (row.subject_id, row.subject_name, row.masked) == ("********0001", "A*** N***", True)
    assert row.code_sha256.startswith("*" * 60)


def test_a_raw_code_s_text_and_digest_are_masked(store: Store) -> None:
    _add(store, raw_event(1, "<img src=x onerror=alert(1)>"))
    (row,) = view_entries(store, VIEWER, EntryFilter()).items
    assert row.code_text == "****(1)>"
    assert row.subject_id == row.code_sha256
    assert row.subject_id.startswith("*" * 60)


def test_unmasking_needs_a_manager_and_is_audited(many: Store, clock: MovableClock) -> None:
    audit = AuditLog(many.engine, clock=clock)
    with pytest.raises(NotAllowed):
        view_entries(many, VIEWER, EntryFilter(), unmask=True, audit=audit)
    page = view_entries(many, MANAGER, EntryFilter(device_id="gate-2"), unmask=True, audit=audit)
    assert page.items[0].subject_id == ALICE
    assert not page.items[0].masked
    (row,) = audit.rows()
    assert (row.actor, row.action) == ("minh", "unmask")
    assert row.details["filter"] == {"device_id": "gate-2"}
    assert row.details["shown"] == 1


def test_looking_a_person_up_is_audited_even_masked(many: Store) -> None:
    audit = AuditLog(many.engine)
    view_entries(many, MANAGER, EntryFilter(person="alice"), audit=audit)
    view_entries(many, MANAGER, EntryFilter(), audit=audit)  # browsing: no person, no row
    (row,) = audit.rows()
    assert (row.actor, row.action, row.subject) == ("minh", "search", "alice")


def test_a_viewer_cannot_look_a_person_up_even_masked(many: Store) -> None:
    audit = AuditLog(many.engine)
    for person in (ALICE, "alice"):  # an ID number, or part of a name
        with pytest.raises(NotAllowed):
            view_entries(many, VIEWER, EntryFilter(person=person), audit=audit)
    assert view_entries(many, VIEWER, EntryFilter(), audit=audit).total == 122
    assert audit.rows() == []
