"""Every benchmark in one table: what `make bench` runs and docs/benchmarks.md holds.

    python -m bench.run_all [--quick] [--only decode,collector] [--write docs/benchmarks.md]

Each module in BENCHMARKS offers `measure(quick) -> list[Figure]`. They run one after the other in
this process's order (a benchmark that starts processes cleans them up itself), so the machine is
as quiet as it gets for each. A benchmark that fails is reported under the table, with its error,
and the others still run. A missed goal is marked in the table and listed under it. Either way
the report is still printed and written (--write): the figures are kept, the run is just not
green. At the end, stderr says plainly which goals were missed and which benchmarks failed.

Exit status:
    0  every benchmark ran and every enforced goal was met;
    1  a benchmark failed (whatever the goals);
    3  every benchmark ran, but a goal was missed (2 is argparse's, for a wrong command line).

A --quick run (a smoke run: its tiny workloads make its figures meaningless) enforces only the
correctness checks (`Figure.is_check`: nothing lost, nothing wrong), which hold at any size; its
missed performance goals are listed, as not enforced, but do not change the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import PI_SPEED, Figure, table

EXIT_BENCHMARK_FAILED = 1
EXIT_GOAL_MISSED = 3

# (area, module): in the order of the data path.
BENCHMARKS = (
    ("decode", "bench.decode_bench"),
    ("robustness", "bench.robustness_bench"),
    ("pipeline", "bench.latency_bench"),
    ("pipeline", "bench.cpu_bench"),
    ("pipeline", "bench.agent_bench"),
    ("journal", "bench.journal_bench"),
    ("policy", "bench.site_lists_lookup"),
    ("collector", "bench.ingest_bench"),
    ("collector", "bench.client_bench"),
    ("collectors", "bench.collectors_bench"),
    ("pipeline", "bench.flush_bench"),
)


def run_benchmark(module_name: str, quick: bool) -> tuple[list[Figure], str | None, float]:
    """(figures, error or None, seconds taken)."""
    started = time.monotonic()
    try:
        module = importlib.import_module(module_name)
        figures = list(module.measure(quick=quick))
    except Exception as error:  # one broken benchmark must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        return [], f"{type(error).__name__}: {error}", time.monotonic() - started
    return figures, None, time.monotonic() - started


def missed_goals(figures: Sequence[Figure], quick: bool) -> tuple[list[Figure], list[Figure]]:
    """(enforced, excused): the figures whose goal was missed. A --quick run enforces only the
    correctness checks; a full run enforces every goal."""
    missed = [figure for figure in figures if figure.met is False]
    enforced = [figure for figure in missed if figure.is_check or not quick]
    excused = [figure for figure in missed if figure not in enforced]
    return enforced, excused


def missed_line(figure: Figure) -> str:
    """One missed goal: area, figure, value, goal."""
    kind = " (correctness check)" if figure.is_check else ""
    return f"[{figure.area}] {figure.name}: {figure.value_text}, goal {figure.goal}{kind}"


def projections(figures: Sequence[Figure]) -> str:
    """CPU-bound figures projected to Raspberry Pi cores (value / relative speed)."""
    rows = [figure for figure in figures if figure.cpu_bound]
    if not rows:
        return ""
    boards = list(PI_SPEED)
    lines = [
        "| area | figure | this machine | " + " | ".join(f"{b} (projected)" for b in boards) + " |",
        "|---|---|---|" + "---|" * len(boards),
    ]
    for figure in rows:
        projected = " | ".join(
            f"{figure.value / PI_SPEED[board]:.2f} {figure.unit}" for board in boards
        )
        lines.append(
            f"| {figure.area} | {figure.name} | {figure.value:.2f} {figure.unit} | {projected} |"
        )
    return "\n".join(lines)


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (a Raspberry Pi's board `Model`), if there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_line() -> str:
    cpu = cpu_model() or platform.processor() or platform.machine()
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def report(
    figures: Sequence[Figure],
    failures: Sequence[str],
    command: str,
    seconds: float,
    quick: bool = False,
) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Command: `{command}` ({seconds:.0f} s), {stamp}.",
        f"Machine: {machine_line()}.",
        "",
        table(figures),
    ]
    enforced, excused = missed_goals(figures, quick)
    if enforced:
        parts += ["", "Goals missed:", ""] + [f"- {missed_line(figure)}" for figure in enforced]
    if excused:
        parts += ["", "Performance goals missed in this --quick run (not enforced):", ""]
        parts += [f"- {missed_line(figure)}" for figure in excused]
    if failures:
        parts += ["", "Benchmarks that failed:", ""] + [f"- {failure}" for failure in failures]
    projected = projections(figures)
    if projected:
        speeds = ", ".join(f"{board} at {speed}x" for board, speed in PI_SPEED.items())
        parts += [
            "",
            f"Projected to Raspberry Pi cores ({speeds} of this machine's core):",
            "",
            projected,
        ]
    return "\n".join(parts) + "\n"


def write_into(document: Path, generated: str) -> None:
    """Replace the generated part of `document` (between the markers), keeping the prose."""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = document.read_text(encoding="utf-8") if document.exists() else f"{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise SystemExit(f"{document}: the markers {begin} and {end} are missing")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    document.write_text(f"{head}{begin}\n{generated}{end}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated areas to run")
    parser.add_argument("--write", type=Path, help="put the table into this Markdown file")
    args = parser.parse_args(argv)
    areas = {area for area in args.only.split(",") if area}
    started = time.monotonic()
    figures: list[Figure] = []
    failures: list[str] = []
    for area, module_name in BENCHMARKS:
        if areas and area not in areas:
            continue
        print(f"bench: {module_name} ...", file=sys.stderr, flush=True)
        found, error, seconds = run_benchmark(module_name, args.quick)
        print(f"bench: {module_name} took {seconds:.0f} s", file=sys.stderr, flush=True)
        figures += found
        if error is not None:
            failures.append(f"{module_name}: {error}")
    command = "python -m bench.run_all " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = report(figures, failures, command.strip(), time.monotonic() - started, args.quick)
    print(text, flush=True)
    if args.write is not None:
        write_into(args.write, text)
    return verdict(figures, failures, args.quick)


def verdict(figures: Sequence[Figure], failures: Sequence[str], quick: bool) -> int:
    """Say on stderr, last, what keeps the run from being green; return the exit status."""
    enforced, excused = missed_goals(figures, quick)
    lines = []
    if excused:
        lines.append(f"{len(excused)} performance goal(s) missed, not enforced in a --quick run:")
        lines += [f"  {missed_line(figure)}" for figure in excused]
    if enforced:
        lines.append(f"{len(enforced)} goal(s) MISSED:")
        lines += [f"  {missed_line(figure)}" for figure in enforced]
    if failures:
        lines.append(f"{len(failures)} benchmark(s) FAILED:")
        lines += [f"  {failure}" for failure in failures]
    if failures:
        status = EXIT_BENCHMARK_FAILED
        lines.append(f"exit {status}: a benchmark failed")
    elif enforced:
        status = EXIT_GOAL_MISSED
        lines.append(f"exit {status}: a goal was missed")
    else:
        status = 0
        enforcing = "its correctness checks (a --quick run)" if quick else "its goals"
        lines.append(f"exit 0: every benchmark ran and met {enforcing}")
    for line in lines:
        print(f"bench: {line}", file=sys.stderr)
    sys.stderr.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
