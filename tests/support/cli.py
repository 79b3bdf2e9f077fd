"""The real `gatescan` command in its own process, as a user runs it: what the CLI tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
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
