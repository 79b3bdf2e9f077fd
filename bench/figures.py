"""One shape for every benchmark's results, so `make bench` can print them as one table.

Each benchmark module under bench/ keeps its own `main()` (detailed output when run alone) and
offers `measure(quick: bool = False) -> list[Figure]` for `bench/run_all.py`. `quick` runs a
smaller workload (seconds, used by the smoke test); the full run is what docs/benchmarks.md quotes.

A figure states its goal as a comparison (`at_most` / `at_least`); `met` is then computed from the
measured value, never written by hand. Figures without a goal are context (baselines, projections).

A goal is a performance goal (how fast, how much) or a correctness check (nothing lost, nothing
wrong): `make bench` fails on either when missed, but a `--quick` run only on a check, since a
smoke run's tiny workloads can miss a performance goal by design while a lost event is lost at
any size. `check` says which; left out, a goal of `at_most=0` (a count that must stay zero, like
events lost) is a check and any other goal is a performance goal.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# How fast a Pi core runs this kind of code relative to this machine's core (design notes: a
# Cortex-A76 at about 0.35x a desktop x86 core, a Pi 4's Cortex-A72 at about half of that).
PI_SPEED = {"Pi 5": 0.35, "Pi 4": 0.175}


@dataclass(frozen=True)
class Figure:
    """One measured number, in the area of the data path it belongs to."""

    area: str  # "decode", "pipeline", "journal", "collector", ...
    name: str  # what was measured, e.g. "p95 per 1280x720 frame with a code, default backend"
    value: float
    unit: str  # "ms", "events/s", "%", "ratio", "images", ...
    at_most: float | None = None
    at_least: float | None = None
    note: str = ""  # how, or a baseline measured in the same run
    # True for a cost that grows as the CPU gets slower (ms of computation per frame, % of a
    # core): `make bench` projects it to a Raspberry Pi 5 and Pi 4 (see PI_SPEED).
    cpu_bound: bool = False
    # A correctness check (enforced in every run) or a performance goal (not in a --quick run);
    # None: a check when the goal is `at_most=0`. See `is_check`.
    check: bool | None = None

    @property
    def goal(self) -> str:
        if self.at_most is not None:
            return f"<= {_number(self.at_most)}"
        if self.at_least is not None:
            return f">= {_number(self.at_least)}"
        return ""

    @property
    def met(self) -> bool | None:
        if self.at_most is not None:
            return self.value <= self.at_most
        if self.at_least is not None:
            return self.value >= self.at_least
        return None

    @property
    def value_text(self) -> str:
        """The value as the table shows it, with its unit."""
        return f"{_rounded(self.value)} {self.unit}"

    @property
    def is_check(self) -> bool:
        """Whether the goal is a correctness check, which even a --quick run must meet."""
        if self.check is not None:
            return self.check
        return self.at_most == 0


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank), from unsorted values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _number(value: float) -> str:
    return f"{value:g}"


def table(figures: Sequence[Figure]) -> str:
    """The figures as a Markdown table (what `make bench` prints and docs/benchmarks.md holds)."""
    lines = [
        "| area | figure | value | goal | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for figure in figures:
        met = {True: "yes", False: "**no**", None: ""}[figure.met]
        lines.append(
            f"| {figure.area} | {figure.name} | {figure.value_text} | {figure.goal} | {met} "
            f"| {figure.note} |"
        )
    return "\n".join(lines)


def _rounded(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def bench_main(
    argv: Sequence[str] | None,
    doc: str | None,
    module: str,
    measure: Callable[..., list[Figure]],
    size: tuple[str, type[int] | type[float]],
    decimals: int = 2,
) -> int:
    """A pipeline benchmark run alone: `--quick`, `--<size>` (its workload), `--backend`; then
    its figures, one a line. `measure(quick, backend, size)` is the module's own."""
    option, kind = size
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(f"--{option}", type=kind, default=None)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    figures = measure(args.quick, args.backend, getattr(args, option))
    print(f"command: python -m {module} {' '.join(sys.argv[1:])}".rstrip())
    width = max((len(figure.name) for figure in figures), default=0)
    for figure in figures:
        goal = f" (goal {figure.goal})" if figure.goal else ""
        value = f"{figure.value:8.{decimals}f}"
        print(f"{figure.name:{width}} {value} {figure.unit}{goal}  {figure.note}")
    return 0
