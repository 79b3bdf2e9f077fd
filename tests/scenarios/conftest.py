"""Fixtures of the fault scenarios: a site per test, and the figures each scenario measures.

Figures go to `.artifacts/reliability/<scenario>.json` (one file per scenario, rewritten by
each run) and, at the end of the run, to the terminal as the rows of docs/reliability.md's table.
They reach the end of the run as the test report's user properties, which pytest-xdist carries
from its workers to the process that prints the summary (`make faults` runs on two workers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from gatescan.testing.broker import LocalBroker
from tests.support.fault_site import Figures, Site, Tally
from tests.support.paths import PROJECT_ROOT

FIGURES_DIR = PROJECT_ROOT / ".artifacts" / "reliability"
_RECORDED = pytest.StashKey[list[Figures]]()
_PROPERTY = "reliability_figures"
_config: list[pytest.Config] = []  # the run's config, for the reports' hook


@pytest.fixture
def site(tmp_path: Path, broker: LocalBroker) -> Iterator[Site]:
    running = Site(tmp_path, broker)
    yield running
    running.close()


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> Callable[[Figures], None]:
    """Print a scenario's figures, keep them for the run's summary and in .artifacts/."""

    def record(figures: Figures) -> None:
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        path = FIGURES_DIR / f"{figures.scenario}.json"
        path.write_text(json.dumps(asdict(figures), indent=2) + "\n", encoding="utf-8")
        print(f"\n{table_row(figures)}")
        request.node.user_properties.append((_PROPERTY, asdict(figures)))

    return record


def table_row(figures: Figures) -> str:
    """The scenario's row of the table in docs/reliability.md."""
    count = figures.tally
    recover = "n/a" if figures.recover_s is None else f"{figures.recover_s:.1f} s"
    return (
        f"| {figures.scenario}. {figures.title} | {count.shown} | {count.stored} | "
        f"{count.duplicates} | {count.lost} | {recover} |"
    )


def pytest_configure(config: pytest.Config) -> None:
    _config[:] = [config]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A scenario's figures, from its report (in this process, or from an xdist worker)."""
    if report.when != "call" or not _config:
        return
    for name, value in report.user_properties:
        if name == _PROPERTY and isinstance(value, dict):
            figures = Figures(**{**value, "tally": Tally(**value["tally"])})
            _config[0].stash.setdefault(_RECORDED, []).append(figures)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    recorded = terminalreporter.config.stash.get(_RECORDED, [])
    if not recorded:
        return
    terminalreporter.section("reliability figures (docs/reliability.md)")
    terminalreporter.write_line("| scenario | shown | stored | duplicates | lost | recover |")
    for figures in sorted(recorded, key=scenario_order):
        terminalreporter.write_line(table_row(figures))
        if figures.notes:
            terminalreporter.write_line(f"  {figures.scenario}: {figures.notes}")


def scenario_order(figures: Figures) -> tuple[int, str]:
    """ "6a" after "5" and before "10"."""
    number = "".join(char for char in figures.scenario if char.isdigit())
    return int(number or 0), figures.scenario
