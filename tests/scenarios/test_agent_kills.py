"""Scenarios 2 and 3: the agent killed with SIGKILL (power cut, OOM killer), then restarted with the
same data dir, as systemd does. The journal must always open again, and every event it holds
must reach the collector exactly once.

A restarted agent must not be shown the same codes again as if they were new: each showing would
rightly be a new event, and the test could no longer tell a resend stored twice from a person
shown twice. So each run of the agent looks at its own codes (scenario 3: batch k of distinct
card numbers for run k; scenario 2: an empty lane after the restart), every code is shown once,
and a second stored row with the same code is counted as a duplicate even under a new event_id.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

import pytest

from tests.support.fault_site import (
    Figures,
    GateSettings,
    LoggedProcess,
    Site,
    code_hash,
    distinct_cards,
    last_received_at,
    tally,
    write_frames,
)
from tests.support.waiting import wait_until

FPS, HOLD = 50.0, 0.04  # two frames per code: 25 codes a second
SEED_ENV = "GATESCAN_FAULT_SEED"


def empty_lane(site: Site) -> GateSettings:
    """A camera looking at nobody: a restarted agent only sends what its journal holds."""
    return GateSettings(replay=write_frames(site.root / "empty-lane", [None]), fps=FPS, hold=HOLD)


def test_events_only_in_the_journal_of_a_sigkilled_agent_arrive_after_restart(
    site: Site, record_figures: Callable[[Figures], None]
) -> None:
    codes = distinct_cards(40)
    replay = write_frames(site.root / "replay", codes, lead_in=round(3.0 / HOLD))
    site.start_collector()
    agent = site.start_agent(GateSettings(replay=replay, fps=FPS, hold=HOLD))
    agent.wait_for_log("online at", timeout=20)
    site.broker.stop()  # before the first code: its events can only be in the journal
    wait_until(lambda: len(site.journal_now().history) >= len(codes), 30, "codes journaled", 0.5)
    agent.kill()  # with whatever paho held in memory for the broker
    assert site.stored_count() == 0

    restarted = site.start_agent(empty_lane(site), log_name="agent-restarted")
    restarted.wait_for_log("connecting to", timeout=20)  # the journal opened
    site.broker.start()
    broker_back = time.time()
    site.wait_until_delivered(len(codes), timeout=60)
    assert restarted.stop() == 0, restarted.log_text()[-3000:]

    journal = site.journal()
    stored = site.stored()
    counts = tally(journal.history, stored)
    assert {event.code_sha256 for event in journal.history} == {code_hash(c) for c in codes}
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (40, 40, 0, 0)
    assert counts.invented == 0 and journal.outbox == []
    record_figures(
        Figures(
            scenario="2",
            title="Agent SIGKILLed with 40 events only in its journal",
            tally=counts,
            recover_s=last_received_at(stored) - broker_back,
            notes="recover: from the broker's return (the restarted agent waits for it)",
        )
    )


def kill_at_a_random_moment(agent: LoggedProcess, rng: random.Random, run: int) -> str:
    """Every fifth run dies while starting (importing, then opening and repairing the journal:
    about 0.35 s here); the others at a random moment of the scan stream, once the journal has
    opened. Returns which."""
    if run % 5 == 0:
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment is the point: nothing to wait for
        where = "starting"
    else:
        agent.wait_for_log("connecting to", timeout=20)
        time.sleep(rng.uniform(0.0, 1.5))
        where = "scanning"
    agent.kill()
    assert agent.process.returncode == -signal.SIGKILL, f"run {run} ended by itself"
    return where


@pytest.mark.slow
def test_fifty_sigkills_at_random_moments_never_break_the_journal_nor_duplicate_an_event(
    site: Site, record_figures: Callable[[Figures], None]
) -> None:
    kills = 50
    seed = int(os.environ.get(SEED_ENV, time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    lanes = [
        write_frames(site.root / f"replay-{run:02d}", distinct_cards(40, batch=run))
        for run in range(kills)
    ]
    site.start_collector()
    where: list[str] = []
    for run, lane in enumerate(lanes):
        settings = GateSettings(replay=lane, fps=FPS, hold=HOLD, resend_after=2)
        agent = site.start_agent(settings, log_name=f"agent-{run:02d}")
        where.append(kill_at_a_random_moment(agent, rng, run))
    last_kill_at = time.time()

    final = site.start_agent(empty_lane(site), log_name="agent-final")
    final.wait_for_log("connecting to", timeout=20)  # the journal opened after the last kill
    expected = len(site.journal_now().history)
    site.wait_until_delivered(expected, timeout=120)
    delivered_s = time.time() - last_kill_at
    assert final.stop() == 0, final.log_text()[-3000:]

    journal = site.journal()
    stored = site.stored()
    counts = tally(journal.history, stored)
    seqs = [event.seq for event in journal.history]
    assert len(set(seqs)) == len(seqs), "a seq was handed out twice across the kills"
    errors = [line.text for p in site.processes for line in p.log_lines() if "ERROR" in line.text]
    assert errors == [], f"seed {seed}: {errors}"
    assert counts.shown == expected and counts.shown > kills, f"seed {seed}"
    lost_or_doubled = (counts.duplicates, counts.lost, counts.invented)
    assert counts.stored == counts.shown and lost_or_doubled == (0, 0, 0), f"seed {seed}"
    assert journal.outbox == []
    record_figures(
        Figures(
            scenario="3",
            title="Agent SIGKILLed 50 times at random moments during scans",
            tally=counts,
            recover_s=max(0.0, last_received_at(stored) - last_kill_at),
            notes=(
                f"{where.count('starting')} kills while starting, {where.count('scanning')} while "
                f"scanning; seed {seed} ({SEED_ENV}); recover: from the last kill (0: all stored "
                f"before it); the gate's outbox was empty {delivered_s:.1f} s after it"
            ),
        )
    )
