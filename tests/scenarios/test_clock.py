"""Scenario 7: a gate whose clock is not synchronised, steps back an hour mid-stream, and then
restarts two hours behind (a power cut on a Pi without a battery-backed clock).

The real agent process, started with the documented fault-injection clock (GATESCAN_FAULT_CLOCK,
see device/system/clock.py), the real collector process and a real Mosquitto. Events must say
`clock_synced: false` and carry the kernel's boot id and a seq that only ever grows; the clock
going back must produce no duplicate event_id and lose no event; the collector stamps each entry
with its own `received_at`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.system.clock import FAULT_CLOCK_ENV, read_boot_id
from tests.support.fault_site import (
    Figures,
    LoggedProcess,
    Site,
    code_hash,
    distinct_cards,
    read_journal,
    tally,
    today,
)
from tests.support.lane import Lane, LaneGate, show_and_wait, start_lane_agent
from tests.support.waiting import wait_until

JUMP_AFTER_S = 4.0  # the first batch is shown well within this after the agent starts
STEP_S = -3600.0
RESTART_OFFSET_S = -7200.0
FIRST, SECOND, AFTER_RESTART = 5, 5, 3


def start_with_clock(
    site: Site, lane: Lane, root: Path, monkeypatch: pytest.MonkeyPatch, fault: str, name: str
) -> LoggedProcess:
    monkeypatch.setenv(FAULT_CLOCK_ENV, fault)  # the child inherits the test's environment
    agent = start_lane_agent(
        root,
        LaneGate(lane.folder),
        broker_url=site.broker.url,
        device_id=site.device_id,
        data_dir=site.data_dir,
        log_name=name,
    )
    site.processes.append(agent)
    agent.wait_for_log(f"fault injection: {FAULT_CLOCK_ENV}", 30)
    return agent


def test_unsynced_clock_stepping_back_loses_nothing_and_repeats_no_event_id(
    site: Site,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_figures: Callable[[Figures], None],
) -> None:
    started = datetime.now(UTC)
    site.start_collector()
    lane = Lane(tmp_path / "lane")
    cards = distinct_cards(FIRST + SECOND + AFTER_RESTART, batch=7)
    fault = f"unsynced,jump={STEP_S:.0f}@{JUMP_AFTER_S}"
    agent = start_with_clock(site, lane, tmp_path, monkeypatch, fault, "agent")
    for card in cards[:FIRST]:
        show_and_wait(agent, lane, card)
    assert agent.count("fault injection: the clock steps") == 0, (
        f"the clock stepped before the first {FIRST} codes were shown: raise JUMP_AFTER_S"
    )
    agent.wait_for_log(f"fault injection: the clock steps by {STEP_S:+.0f} s now", 3 * JUMP_AFTER_S)
    for card in cards[FIRST : FIRST + SECOND]:
        show_and_wait(agent, lane, card)
    wait_until(lambda: site.stored_count() == FIRST + SECOND, 15, "both batches stored")
    assert agent.stop() == 0, agent.log_text()[-3000:]

    lane.clear()  # else the restarted gate reads the last code again: a new showing for it
    restarted = start_with_clock(
        site, lane, tmp_path, monkeypatch, f"unsynced,offset={RESTART_OFFSET_S:.0f}", "restarted"
    )
    for card in cards[FIRST + SECOND :]:
        show_and_wait(restarted, lane, card)
    wait_until(lambda: site.stored_count() == len(cards), 15, "every code stored")
    telemetry = next(d for d in site.store.devices() if d.device_id == site.device_id).telemetry
    assert restarted.stop() == 0, restarted.log_text()[-3000:]
    finished = datetime.now(UTC)

    stored = sorted(site.stored(), key=lambda entry: entry.seq)
    # The device's day moved back with its clock: read the history of yesterday too.
    journal = read_journal(site.data_dir, since=today() - timedelta(days=1))
    count = tally(journal.history, stored)
    assert (count.shown, count.stored, count.duplicates, count.lost) == (
        len(cards),
        len(cards),
        0,
        0,
    )
    assert len({entry.event_id for entry in stored}) == len(cards)
    assert [entry.seq for entry in stored] == list(range(1, len(cards) + 1))
    assert [entry.code_sha256 for entry in stored] == [code_hash(card) for card in cards]
    assert not any(entry.clock_synced for entry in stored)
    assert {entry.boot_id for entry in stored} == {read_boot_id()}
    assert telemetry is not None and telemetry["clock_synced"] is False

    ts = [entry.ts for entry in stored]
    stepped_back = ts[FIRST - 1] - ts[FIRST]
    assert timedelta(minutes=59) < stepped_back < timedelta(minutes=61), "an hour back mid-stream"
    assert ts[FIRST + SECOND] < ts[FIRST] - timedelta(minutes=59), "restarted two hours behind"
    assert sorted(ts) != ts, "by the device clock the order is wrong: seq keeps it"
    assert all(started <= entry.received_at <= finished for entry in stored), (
        "the collector stamps entries with its own clock"
    )
    record_figures(
        Figures(
            "7",
            "Clock unsynced, stepped back 1 h mid-stream, restarted 2 h behind",
            count,
            None,
            notes="every event clock_synced=false with the kernel boot_id; seq 1.."
            f"{len(cards)} in scan order while the device ts went back twice",
        )
    )
