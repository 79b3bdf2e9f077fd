"""bench/latency_bench.py: scan-to-light against both bare decodes, the goal on the cold one."""

import re

from bench import latency_bench
from bench.latency_bench import Latencies


def test_ratios_and_overheads_compare_like_percentiles() -> None:
    result = Latencies(
        "fake", light_ms=[2.0, 3.0, 9.0], cold_ms=[1.5, 2.5, 6.0], warm_ms=[1.0, 2.0, 3.0],
        missed=0, unpaired=0,
    )  # fmt: skip
    assert result.ratio(0.5, result.cold_ms) == 3.0 / 2.5
    assert result.ratio(0.5, result.warm_ms) == 3.0 / 2.0
    assert result.ratio(0.99, result.cold_ms) == 9.0 / 6.0
    assert result.overhead(0.5) == 3.0 - 2.5
    assert result.overhead(0.99) == 9.0 - 6.0


def test_a_quick_run_shows_both_baselines_and_the_goal_only_on_the_cold_one() -> None:
    showings = 10
    figures = {
        figure.name: figure for figure in latency_bench.measure(quick=True, showings=showings)
    }

    light = figures["scan-to-light p50"].value
    cold = figures["bare decode of the same frames, cold, p50"].value
    warm = figures["bare decode of the same frames, warm, p50"].value
    on_cold = figures["scan-to-light / bare decode, p50, cold baseline"]
    on_warm = figures["scan-to-light / bare decode, p50, warm baseline"]
    assert on_cold.value == light / cold and on_cold.at_most == latency_bench.GOAL_RATIO
    assert on_warm.value == light / warm and on_warm.goal == ""
    assert "goal is on the cold baseline" in on_warm.note
    assert figures["scan-to-light minus cold bare decode, p50"].value == light - cold
    assert figures["scan-to-light minus cold bare decode, p99"].unit == "ms"
    # A showing is one frame; the decoder takes the newest frame, so on a machine whose cores
    # are taken by something else an empty frame can replace the code's before it is decoded
    # (seen: 2 of 10 with two other test suites running). Most must light; the bench's own
    # figure reports the count, and `make bench` is run on a quiet machine.
    found = re.search(r"showings without light: (\d+)", on_cold.note)
    assert found, on_cold.note
    assert int(found.group(1)) < showings // 2, on_cold.note
