"""The benchmark report: goals computed from values, failures shown, docs keep their prose; and
`make bench`'s exit status: not green when a benchmark failed or a goal was missed."""

import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import run_all
from bench.figures import Figure, percentile, table
from bench.run_all import (
    EXIT_BENCHMARK_FAILED,
    EXIT_GOAL_MISSED,
    main,
    projections,
    run_benchmark,
    write_into,
)

DOCUMENT = "# Benchmarks\nprose\n<!-- bench:begin -->\nold\n<!-- bench:end -->\nafter\n"
FAST = Figure("decode", "p95 with a code", 2.5, "ms", at_most=3)
SLOW = Figure("decode", "p95 with a code", 3.5, "ms", at_most=3)
NOTHING_LOST = Figure("collector", "events lost, 50 gates", 0, "events", at_most=0)
ONE_LOST = Figure("collector", "events lost, 50 gates", 1, "events", at_most=0)
BASELINE = Figure("collector", "bare paho", 9000, "msg/s", note="baseline")


def test_goal_met_is_computed_from_the_value() -> None:
    assert Figure("decode", "p95", 2.5, "ms", at_most=3).met is True
    assert Figure("decode", "p95", 3.5, "ms", at_most=3).met is False
    assert Figure("collector", "ratio", 0.8, "x", at_least=0.75).met is True
    assert Figure("collector", "ratio", 0.7, "x", at_least=0.75).met is False
    assert Figure("decode", "baseline", 24.0, "ms").met is None


def test_a_goal_of_nothing_at_all_is_a_correctness_check() -> None:
    assert ONE_LOST.is_check and NOTHING_LOST.is_check
    assert not SLOW.is_check
    assert Figure("robustness", "photos read", 9, "images", at_least=10, check=True).is_check
    assert not Figure("decode", "frames over budget", 2, "frames", at_most=0, check=False).is_check


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


def fake_benchmarks(
    monkeypatch: pytest.MonkeyPatch, *measures: Callable[[bool], list[Figure]]
) -> None:
    """run_all.BENCHMARKS replaced by modules whose measure() is each of `measures`."""
    benchmarks = []
    for n, measure in enumerate(measures):
        name = f"bench.tests.fake_bench_{n}"
        module = types.ModuleType(name)
        module.measure = lambda quick, measure=measure: measure(quick)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
        benchmarks.append(("fake", name))
    monkeypatch.setattr(run_all, "BENCHMARKS", tuple(benchmarks))


def figures(*found: Figure) -> Callable[[bool], list[Figure]]:
    return lambda quick: list(found)


def fails(quick: bool) -> list[Figure]:
    raise RuntimeError("the broker did not start")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_every_goal_met_is_exit_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake_benchmarks(monkeypatch, figures(FAST, BASELINE), figures(NOTHING_LOST))
    document = tmp_path / "benchmarks.md"
    document.write_text(DOCUMENT)
    status, out, err = run(["--write", str(document)], capsys)
    assert status == 0
    assert "Goals missed" not in out and "Goals missed" not in document.read_text()
    assert err.splitlines()[-1] == "bench: exit 0: every benchmark ran and met its goals"


def test_a_missed_goal_fails_the_run_and_is_written_and_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake_benchmarks(monkeypatch, figures(SLOW, BASELINE), figures(NOTHING_LOST))
    document = tmp_path / "benchmarks.md"
    document.write_text(DOCUMENT)
    status, out, err = run(["--write", str(document)], capsys)
    assert status == EXIT_GOAL_MISSED != 0
    missed = "[decode] p95 with a code: 3.50 ms, goal <= 3"
    written = document.read_text()
    assert written.startswith("# Benchmarks\nprose\n<!-- bench:begin -->\nCommand: ")
    assert written.endswith("<!-- bench:end -->\nafter\n")
    for report in (out, written):
        assert "| decode | p95 with a code | 3.50 ms | <= 3 | **no** |" in report
        assert "| collector | events lost, 50 gates | 0 events | <= 0 | yes |" in report
        assert f"Goals missed:\n\n- {missed}\n" in report
    assert f"bench: 1 goal(s) MISSED:\nbench:   {missed}\n" in err
    assert err.splitlines()[-1] == f"bench: exit {EXIT_GOAL_MISSED}: a goal was missed"


def test_a_failed_benchmark_is_exit_1_even_with_a_goal_missed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_benchmarks(monkeypatch, fails, figures(SLOW))
    status, out, err = run([], capsys)
    assert status == EXIT_BENCHMARK_FAILED != EXIT_GOAL_MISSED
    failure = "bench.tests.fake_bench_0: RuntimeError: the broker did not start"
    assert f"Benchmarks that failed:\n\n- {failure}\n" in out
    assert "Goals missed:" in out  # the other benchmark's figures still count
    assert f"bench: 1 benchmark(s) FAILED:\nbench:   {failure}\n" in err
    assert "bench:   [decode] p95 with a code: 3.50 ms, goal <= 3\n" in err
    assert err.splitlines()[-1] == f"bench: exit {EXIT_BENCHMARK_FAILED}: a benchmark failed"


def test_a_quick_run_lists_a_missed_performance_goal_but_does_not_fail_on_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[bool] = []

    def measure(quick: bool) -> list[Figure]:
        seen.append(quick)
        return [SLOW, NOTHING_LOST]

    fake_benchmarks(monkeypatch, measure)
    status, out, err = run(["--quick"], capsys)
    assert seen == [True]
    assert status == 0
    assert "Goals missed:" not in out
    assert "missed in this --quick run (not enforced):\n\n- [decode] p95 with a code" in out
    assert "bench:   [decode] p95 with a code: 3.50 ms, goal <= 3\n" in err
    assert err.splitlines()[-1].startswith("bench: exit 0: ")


def test_a_quick_run_still_fails_on_a_lost_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_benchmarks(monkeypatch, figures(SLOW, ONE_LOST))
    status, out, err = run(["--quick"], capsys)
    assert status == EXIT_GOAL_MISSED
    lost = "[collector] events lost, 50 gates: 1 events, goal <= 0 (correctness check)"
    assert f"Goals missed:\n\n- {lost}\n" in out
    assert f"bench: 1 goal(s) MISSED:\nbench:   {lost}\n" in err
