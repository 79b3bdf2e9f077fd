"""How long the collector's commits take: a fixed-bucket histogram the writer thread fills.

One `observe` per committed batch (a bisect over a dozen bounds and three additions), read at
scrape time by server/metrics/ as a Prometheus histogram. Nothing here needs prometheus-client:
a collector without the `web` extra counts the same way.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds in seconds: a SQLite batch commits in about a millisecond, a slow disk or a
# PostgreSQL over the network in tens of them; past a second something is wrong.
COMMIT_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass
class LatencyHistogram:
    """Counts per bucket (not cumulative; the last one is +Inf), their sum and count."""

    bounds: tuple[float, ...] = COMMIT_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total_s: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total_s += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), +Inf last: Prometheus's buckets."""
        counts = list(self.counts)  # one copy: the writer thread may add meanwhile
        running = 0
        buckets: list[tuple[float, int]] = []
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            buckets.append((bound, running))
        return buckets
