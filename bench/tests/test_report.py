"""The benchmark report: goals computed from values, failures shown, docs keep their prose."""

from pathlib import Path

import pytest

from bench.figures import Figure, percentile, table
from bench.run_all import projections, run_benchmark, write_into


def test_goal_met_is_computed_from_the_value() -> None:
    assert Figure("decode", "p95", 2.5, "ms", at_most=3).met is True
    assert Figure("decode", "p95", 3.5, "ms", at_most=3).met is False
    assert Figure("collector", "ratio", 0.8, "x", at_least=0.75).met is True
    assert Figure("collector", "ratio", 0.7, "x", at_least=0.75).met is False
    assert Figure("decode", "baseline", 24.0, "ms").met is None


def test_table_marks_a_missed_goal() -> None:
    text = table([Figure("decode", "p95 with a code", 3.5, "ms", at_most=3)])
    assert "| decode | p95 with a code | 3.50 ms | <= 3 | **no** |" in text


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.5) == 50
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_cpu_bound_figures_are_projected_to_pi_cores() -> None:
    text = projections([Figure("decode", "p95", 1.75, "ms", cpu_bound=True)])
    assert "| decode | p95 | 1.75 ms | 5.00 ms | 10.00 ms |" in text
    assert projections([Figure("collector", "events/s", 9000, "events/s")]) == ""


def test_a_benchmark_that_fails_is_reported_not_hidden() -> None:
    figures, error, _ = run_benchmark("bench.no_such_benchmark", quick=True)
    assert figures == []
    assert error is not None and "No module named" in error


def test_write_into_replaces_only_the_generated_part(tmp_path: Path) -> None:
    document = tmp_path / "benchmarks.md"
    document.write_text(
        "# Benchmarks\nprose\n<!-- bench:begin -->\nold\n<!-- bench:end -->\nafter\n"
    )
    write_into(document, "new table\n")
    assert document.read_text() == (
        "# Benchmarks\nprose\n<!-- bench:begin -->\nnew table\n<!-- bench:end -->\nafter\n"
    )
