"""The collectors benchmark end to end at its smallest (one collector, then two in a shared
group, on a PostgreSQL of its own), so it cannot rot; and its sums over segments and shares."""

from __future__ import annotations

from bench.collectors_bench import (
    ONE,
    TWO,
    Outcome,
    Share,
    cpu_groups,
    figures_for,
    paced,
    run,
)
from bench.ingest_gates import COLLECTOR
from bench.ingest_site import Segment
from gatescan.testing.postgres import running_postgres


def test_one_then_two_collectors_on_postgres_store_every_event_once_and_share_them() -> None:
    with running_postgres() as postgres:
        outcome = run(20, rounds=1, segment_s=0.5, settle_s=0.2, postgres=postgres)
    assert outcome.published > 0
    assert outcome.stored == outcome.distinct_ids == outcome.published
    assert outcome.collectors_stored == outcome.stored  # each process's own count adds up
    assert outcome.lost == 0 and outcome.duplicates == 0 and outcome.broker_drops == 0
    assert set(outcome.share_of(ONE)) == {"collector 1"}
    two = outcome.share_of(TWO)
    assert set(two) == {"collector 1", "collector 2"} and min(two.values()) > 0
    assert min(outcome.rate(ONE), outcome.rate(TWO)) > 0
    assert min(outcome.events_per_commit(ONE), outcome.events_per_commit(TWO)) >= 1
    assert outcome.latencies(paced(ONE)) and outcome.latencies(paced(TWO))
    groups = cpu_groups(outcome.cpu_us_per_event(TWO))
    assert min(groups["collectors"], groups["postgres"], groups["broker"]) > 0
    figures = figures_for(outcome)
    assert all(figure.met is not False for figure in figures), figures


def test_cpu_per_event_and_shares_add_up_over_segments_and_processes() -> None:
    segments = [
        Segment(COLLECTOR, TWO, 0.0, 2.0, 1000, {"collector 1": 50.0, "postgres": 10.0}),
        Segment(COLLECTOR, TWO, 5.0, 7.0, 1000, {"collector 1": 25.0, "postgres": 10.0}),
    ]
    shares = [
        Share(TWO, "collector 1", 600, 600, 0, batches=60),
        Share(TWO, "collector 2", 400, 400, 0, batches=40),
        Share(TWO, "collector 1", 600, 600, 0, batches=60),  # a second round
        Share(TWO, "collector 2", 400, 400, 0, batches=40),
    ]
    outcome = Outcome(segments, [], 2000, 0, gates=2, window=1, shares=shares, distinct_ids=2000)
    # (1 s + 0.5 s of CPU) over 2,000 events; 0.4 s of PostgreSQL over 2,000.
    assert outcome.cpu_us_per_event(TWO) == {"collector 1": 750.0, "postgres": 200.0}
    assert outcome.share_of(TWO) == {"collector 1": 0.6, "collector 2": 0.4}
    assert outcome.events_per_commit(TWO) == 10.0
    assert cpu_groups({"collector 1": 1.0, "collector 2": 2.0, "gates 1": 3.0}) == {
        "collectors": 3.0,
        "postgres": 0.0,
        "broker": 0.0,
        "gates": 3.0,
    }
