"""The real `gatescan` command in its own process, as a user runs it: what the CLI tests share."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.paths import PROJECT_ROOT


def run_gatescan(
    args: Sequence[str],
    cwd: Path = PROJECT_ROOT,
    stdin: str = "",
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m gatescan.cli ARGS` with `stdin`, its output as text; `env` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "gatescan.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def run_gatescan_here(
    args: Sequence[str], stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`run_gatescan`, but `gatescan.cli.main(ARGS)` in this process: the same parser, command
    and exit code, its stdin, stdout and stderr swapped for strings, `env` set (TZ applied with
    tzset) and put back. Half a second to two less per call than a process (no interpreter, no
    imports): for the tests whose subject is what a command does, not its process; keep one test
    of a command family on `run_gatescan`, so the real process is still run."""
    from gatescan.cli import main

    saved_env = {name: os.environ.get(name) for name in env or {}}
    saved_stdin = sys.stdin
    # Text streams over bytes, as a process's are: a command may write its bytes to .buffer.
    out, err = (io.TextIOWrapper(io.BytesIO(), "utf-8", write_through=True) for _ in range(2))
    os.environ.update(env or {})
    time.tzset()
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's errors and --help
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.stdin = saved_stdin
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        time.tzset()
    return subprocess.CompletedProcess(list(args), code, _text(out), _text(err))


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    written = stream.buffer
    assert isinstance(written, io.BytesIO)
    return written.getvalue().decode("utf-8")


@contextmanager
def gatescan_dashboard(args: Sequence[str], db: Path, cwd: Path) -> Iterator[int]:
    """`gatescan ARGS --db DB` (`server` or `web`) serving on a free port of 127.0.0.1 until the
    block ends: the port. The process is killed at the end; its output is in a failure's
    message if it ends by itself."""
    with dashboard_process(args, db, cwd) as (_, port):
        yield port


@contextmanager
def dashboard_process(
    args: Sequence[str], db: Path, cwd: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`gatescan_dashboard`, with the process too: for a test that stops it itself (SIGTERM) and
    reads its output."""
    from gatescan.testing.broker import free_port
    from tests.support.waiting import wait_until

    port = free_port()
    command = [*args, "--db", str(db), "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "gatescan.cli", *command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[0])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(answers, 30, "the dashboard to answer")
        yield process, port
    finally:  # kill() leaves a process that has ended alone; communicate() then gives its output
        process.kill()
        process.communicate()
