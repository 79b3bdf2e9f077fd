"""Scenario 6: the network between the gate and the broker breaks the ways real networks do.

The gate's link runs through tcp_proxy.TcpProxy; the collector talks to the broker directly.
- Half-open: the proxy stops forwarding without closing for 60 s (a NAT box that lost its
  state). Nothing tells the gate: it must notice by its MQTT keepalive (5 s here, so "about two
  keepalives" is about 10 s), reconnect (new connections work), and lose nothing.
- Flapping: 50 resets (RST) of the gate's connection while it is shown 2,000 codes.
"""

from __future__ import annotations

import random
import select
import socket
import time
from collections.abc import Callable, Iterator

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
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

KEEPALIVE = 5
FREEZE_S = 60.0
DETECTION_BOUND_S = 2 * KEEPALIVE + 2.0  # paho checks its keepalive about once a second


@pytest.fixture
def proxy(site: Site) -> Iterator[TcpProxy]:
    with TcpProxy(site.broker.host, site.broker.port) as running:
        yield running


def test_proxy_forwards_freezes_without_closing_and_resets() -> None:
    with socket.create_server(("127.0.0.1", 0)) as target:
        proxy = TcpProxy("127.0.0.1", target.getsockname()[1]).start()
        try:
            first = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            first_far, _ = target.accept()
            first.sendall(b"ping")
            assert first_far.recv(16) == b"ping"
            assert proxy.freeze() == 1
            first.sendall(b"lost")
            readable, _, _ = select.select([first_far], [], [], 0.5)
            assert readable == [], "a frozen connection forwarded, or was closed"
            second = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            second_far, _ = target.accept()
            second.sendall(b"pong")
            assert second_far.recv(16) == b"pong"
            assert proxy.reset() == 2  # the frozen one is still open: it is reset too
            for client in (first, second):
                with pytest.raises(ConnectionResetError):
                    client.recv(16)
        finally:
            proxy.stop()


def log_time_after(agent: LoggedProcess, text: str, after: float) -> float:
    """The agent's own timestamp of its first line holding `text` logged after `after`."""
    line = agent.wait_for_log(text, timeout=60, occurrence=agent.count(text) + 1)
    assert line.at is not None and line.at >= after - 0.01, line.text
    return line.at


@pytest.mark.slow
def test_half_open_link_is_noticed_within_two_keepalives_and_nothing_is_lost(
    site: Site, proxy: TcpProxy, record_figures: Callable[[Figures], None]
) -> None:
    codes = distinct_cards(200)
    replay = write_frames(site.root / "replay", codes)  # 10 codes a second for 20 s
    settings = GateSettings(replay=replay, fps=20, hold=0.1, keepalive=KEEPALIVE)
    site.start_collector()
    agent = site.start_agent(settings, broker_url=proxy.url)
    agent.wait_for_log("online at", timeout=20)
    wait_until(lambda: site.stored_count() >= 20, 20, "events flowing through the proxy")

    assert proxy.freeze() == 1
    frozen_at = time.time()
    noticed_at = log_time_after(agent, "offline:", frozen_at)
    back_at = log_time_after(agent, "online at", noticed_at)
    site.wait_until_delivered(len(codes), timeout=60)
    time.sleep(max(0.0, frozen_at + FREEZE_S - time.time()))  # the freeze's length itself
    proxy.release_frozen()
    assert agent.stop() == 0, agent.log_text()[-3000:]

    journal = site.journal()
    stored = site.stored()
    counts = tally(journal.history, stored)
    blind = {e.event_id for e in journal.history if frozen_at <= e.ts.timestamp() <= back_at}
    assert blind, "no code was shown while the link was half-open: the test proved nothing"
    assert noticed_at - frozen_at <= DETECTION_BOUND_S, f"noticed after {noticed_at - frozen_at}"
    assert {event.code_sha256 for event in journal.history} == {code_hash(c) for c in codes}
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (200, 200, 0, 0)
    assert counts.invented == 0 and journal.outbox == []
    record_figures(
        Figures(
            scenario="6a",
            title="Half-open link for 60 s (keepalive 5 s)",
            tally=counts,
            recover_s=last_received_at(r for r in stored if r.event_id in blind) - frozen_at,
            notes=(
                f"noticed {noticed_at - frozen_at:.1f} s after the freeze, online again "
                f"{back_at - frozen_at:.1f} s after it; {len(blind)} events made while "
                "half-open; recover: from the freeze to the last of those stored"
            ),
        )
    )


@pytest.mark.slow
def test_flapping_link_reset_50_times_during_2000_scans_stores_each_once(
    site: Site, proxy: TcpProxy, record_figures: Callable[[Figures], None]
) -> None:
    codes = distinct_cards(2000)
    replay = write_frames(site.root / "replay", codes)  # 22 codes a second for 91 s
    site.start_collector()
    agent = site.start_agent(GateSettings(replay=replay, fps=44, hold=0.046), broker_url=proxy.url)
    rng = random.Random(len(codes))
    resets_mid_stream = 0
    for reset in range(50):
        agent.wait_for_log("online at", timeout=60, occurrence=reset + 1)
        time.sleep(rng.uniform(0.1, 0.6))  # a moment of the link's life: nothing to wait for
        assert proxy.reset() == 1, "the gate's connection was not open"
        resets_mid_stream += agent.count("shown recorded") < len(codes)
    last_reset_at = time.time()
    scanned_during_resets = agent.count("shown recorded")
    site.wait_until_delivered(len(codes), timeout=120)
    assert agent.stop() == 0, agent.log_text()[-3000:]

    journal = site.journal()
    stored = site.stored()
    counts = tally(journal.history, stored)
    before_last_reset = {e.event_id for e in journal.history if e.ts.timestamp() <= last_reset_at}
    assert resets_mid_stream == 50, f"only {resets_mid_stream} resets came while codes were shown"
    assert {event.code_sha256 for event in journal.history} == {code_hash(c) for c in codes}
    assert (counts.shown, counts.stored, counts.duplicates, counts.lost) == (2000, 2000, 0, 0)
    assert counts.invented == 0 and journal.outbox == []
    record_figures(
        Figures(
            scenario="6b",
            title="Flapping link: 50 resets during 2,000 scans",
            tally=counts,
            recover_s=last_received_at(r for r in stored if r.event_id in before_last_reset)
            - last_reset_at,
            notes=(
                f"{proxy.accepted} connections in all; {scanned_during_resets} codes scanned "
                "while the resets went on; recover: from the last reset to the last event made "
                "before it stored"
            ),
        )
    )
