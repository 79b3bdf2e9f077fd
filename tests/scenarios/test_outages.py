"""Scenario 1: the broker is stopped for 30 s while the gate is shown 300 different codes.

The gate must keep reading and lighting, show the `offline` state between scans, journal every
code, and deliver all 300, each stored once, after the broker returns. What the gate did, and in
which order, is read from the agent's own log: "indicator: offline (faults: none)" when the link
state changes, and one "shown recorded (ok) for code <digest>: journaled as seq N" per scan,
written right after the indicator was told (light first, then journal).
"""

from __future__ import annotations

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

CODES = 300
OUTAGE_S = 30.0
FPS, HOLD = 25.0, 0.08  # two frames per code: 300 codes in 24 s, inside the outage
LEAD_IN_S = 3.0  # an empty lane first: the broker is stopped before the first code shows


def gate_story(agent: LoggedProcess, since: float, until: float) -> list[str]:
    """Between `since` and `until` (epoch s), what the agent's log says the gate showed, in order:
    "offline", "idle" or "fault" for a change of the state shown between scans, and the code's
    digest for each scan."""
    story = []
    for line in agent.log_lines():
        if line.at is None or not since <= line.at <= until:
            continue
        if "indicator: " in line.text:
            story.append(line.text.split("indicator: ")[1].split()[0])
        elif " for code " in line.text and line.text.split(": ", 1)[1].startswith("shown "):
            story.append(line.text.split(" for code ")[1].split(":")[0])
    return story


def first_log_time(agent: LoggedProcess, text: str, since: float) -> float:
    times = [line.at for line in agent.log_lines() if text in line.text and (line.at or 0) >= since]
    assert times, f"no {text!r} in the agent's log since {since}"
    return min(t for t in times if t is not None)


@pytest.mark.slow
def test_broker_outage_of_30_s_loses_nothing_and_the_gate_keeps_lighting_offline(
    site: Site, record_figures: Callable[[Figures], None]
) -> None:
    codes = distinct_cards(CODES)
    replay = write_frames(site.root / "replay", codes, lead_in=round(LEAD_IN_S / HOLD))
    site.start_collector()
    agent = site.start_agent(GateSettings(replay=replay, fps=FPS, hold=HOLD))
    agent.wait_for_log("online at", timeout=20)

    stopping_at = time.time()
    site.broker.stop()
    stopped_at = time.time()
    # The gate keeps reading: every code is journaled while the broker is still down.
    wait_until(lambda: len(site.journal_now().history) >= CODES, OUTAGE_S, "codes journaled", 0.5)
    time.sleep(max(0.0, stopped_at + OUTAGE_S - time.time()))  # the outage's length itself
    assert site.stored_count() == 0, "an event reached the database with the broker down"
    site.broker.start()
    restarted_at = time.time()
    site.wait_until_delivered(CODES, timeout=120)
    back_idle = first_log_time(agent, "indicator: idle", since=restarted_at)
    stopping_agent_at = time.time()
    assert agent.stop() == 0, agent.log_text()[-3000:]

    journal = site.journal()
    stored = site.stored()
    counts = tally(journal.history, stored)
    shown_at = [event.ts.timestamp() for event in journal.history]
    assert stopped_at < min(shown_at) and max(shown_at) < restarted_at, (
        "the premise failed: codes were shown from "
        f"{min(shown_at) - stopped_at:.1f} s to {max(shown_at) - stopped_at:.1f} s after the "
        f"broker stopped, and the outage lasted {restarted_at - stopped_at:.1f} s"
    )
    # Offline as soon as the link dropped, then one scan per code, each code in the order shown,
    # with no other state in between (offline stayed on between scans), then idle once back.
    digests = [code_hash(code)[:12] for code in codes]
    story = gate_story(agent, since=stopping_at, until=stopping_agent_at)
    assert story == ["offline", *digests, "idle"], [*story[:3], "...", *story[-3:]]
    went_offline = first_log_time(agent, "indicator: offline", since=stopping_at)

    assert journal.outbox == []
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (CODES, CODES, 0, 0)
    assert counts.invented == 0
    record_figures(
        Figures(
            scenario="1",
            title="Broker stopped 30 s while 300 codes are shown",
            tally=counts,
            recover_s=last_received_at(stored) - restarted_at,
            notes=(
                f"offline shown {went_offline - stopping_at:.2f} s after the broker stopped, idle "
                f"{back_idle - restarted_at:.1f} s after it returned; codes shown "
                f"{min(shown_at) - stopped_at:.1f}-{max(shown_at) - stopped_at:.1f} s into the "
                f"{restarted_at - stopped_at:.0f} s outage"
            ),
        )
    )
