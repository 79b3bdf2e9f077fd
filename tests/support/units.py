"""The shipped systemd units (deploy/systemd/) read as systemd reads them, for the deploy tests."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from tests.support.paths import DEPLOY

UNITS_DIR = DEPLOY / "systemd"
AGENT_UNIT = "gatescan-agent.service"
COLLECTOR_UNIT = "gatescan-collector.service"
SERVER_UNIT = "gatescan-server.service"
UNIT_NAMES = (AGENT_UNIT, COLLECTOR_UNIT, SERVER_UNIT)

Unit = dict[str, dict[str, list[str]]]


def read_unit(name: str) -> Unit:
    """{section: {key: [values in order]}}; a key given twice keeps both, as systemd does for
    list settings (SystemCallFilter=, DeviceAllow=). No line continuations: each setting, the
    ExecStart= line included, is one line, so that it can be read and replaced as one."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, line in enumerate((UNITS_DIR / name).read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith(("#", ";")):
            continue
        if text.endswith("\\"):
            raise ValueError(f"{name}:{number}: a continued line; keep each setting on one line")
        if text.startswith("[") and text.endswith("]"):
            section = unit.setdefault(text[1:-1], {})
            continue
        key, sep, value = text.partition("=")
        if section is None or not sep:
            raise ValueError(f"{name}:{number}: not a setting of a section: {text!r}")
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def service_setting(unit: Unit, key: str) -> str:
    """The one value of a [Service] setting that may be given once."""
    (value,) = unit["Service"][key]
    return value


def exec_start(unit: Unit) -> list[str]:
    """ExecStart= split as a shell would (systemd's quoting rules agree on these lines)."""
    return shlex.split(service_setting(unit, "ExecStart"))


def option(args: list[str], flag: str) -> str:
    """The value after `flag` in a command line."""
    return args[args.index(flag) + 1]


def systemd_analyze() -> str:
    """systemd's own analyzer: installed by deploy/dev/bootstrap.sh (Debian package systemd)."""
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: run deploy/dev/bootstrap.sh (apt package systemd)"
    return found


def state_directory(unit: Unit) -> Path:
    """Where systemd makes the unit's StateDirectory= (the system manager's /var/lib)."""
    return Path("/var/lib") / service_setting(unit, "StateDirectory")


def verify_unit(root: Path, name: str, text: str) -> str:
    """`systemd-analyze verify` of a unit with this text, offline, in a tree of its own under
    `root` that holds the unit, an executable at each ExecStart= and ExecReload= path and the
    three targets every service depends on by default; what it said, "" when it found nothing
    (its warnings leave the exit code 0, so the output is the verdict)."""
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for target in ("sysinit.target", "basic.target", "shutdown.target"):
        (units / target).write_text("[Unit]\n", encoding="utf-8")
    (units / name).write_text(text, encoding="utf-8")
    commands = [
        line.partition("=")[2]
        for line in text.splitlines()
        if line.startswith(("ExecStart=", "ExecReload="))
    ]
    for command in commands:
        program = root / shlex.split(command)[0].lstrip("/")
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n", encoding="utf-8")
        program.chmod(0o755)
    done = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "--man=no", name],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    said = done.stdout + done.stderr
    return f"exit {done.returncode}: {said}" if done.returncode else said
