"""The updater's units (deploy/systemd/gatescan-updater.service and .path) judged by systemd's
own analyzer: `verify` loads them as the manager would (offline, in a tree of their own), and
`security` scores the service's exposure, pinned at today's figure with what it leaves open and
why. The updater runs as root on purpose (docs/operations.md, "Updating gates"), so its score is
not the agent's; what it may do as root is cut to what it needs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from device.update.layout import Layout
from tests.deploy.test_units import security
from tests.support.units import UNITS_DIR, systemd_analyze

SERVICE = "gatescan-updater.service"
PATH_UNIT = "gatescan-updater.path"
CEILING = 1.8  # systemd 252 (Debian 12); the agent scores 1.5, as user gatescan
STILL_OPEN = {
    "RootDirectory=/RootImage=": "it runs from and writes the host's /opt/gatescan",
    "User=/DynamicUser=": "root: it writes /opt/gatescan, which the agent must not",
    "CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)": "the request in the agent's 0700 dir",
    "RestrictAddressFamilies=~AF_UNIX": "systemd's bus, to restart the agent",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "a bundle by URL; pip's index",
    "PrivateNetwork=": "the same",
    "IPAddressDeny=": "the server that serves releases is the site's",
    "PrivateUsers=": "it must see the gatescan user's files as root",
    "DeviceAllow=": "ProtectClock= itself lets it read the RTC (char-rtc r)",
    "UMask=": "its result and releases are for the agent (user gatescan) to read",
}


def verify(root: Path, texts: dict[str, str]) -> str:
    """`systemd-analyze verify` of these units in a tree of their own (tests/support/units.py
    says why offline needs the targets and an executable at ExecStart=)."""
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for target in ("sysinit.target", "basic.target", "shutdown.target", "paths.target"):
        (units / target).write_text("[Unit]\n", encoding="utf-8")
    for name, text in texts.items():
        (units / name).write_text(text, encoding="utf-8")
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                program = root / shlex.split(line.partition("=")[2])[0].lstrip("/")
                program.parent.mkdir(parents=True, exist_ok=True)
                program.write_text("#!/bin/sh\n", encoding="utf-8")
                program.chmod(0o755)
    done = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "--man=no", *texts],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    said = done.stdout + done.stderr
    return f"exit {done.returncode}: {said}" if done.returncode else said


def shipped() -> dict[str, str]:
    return {name: (UNITS_DIR / name).read_text(encoding="utf-8") for name in (SERVICE, PATH_UNIT)}


def test_systemd_verifies_the_updaters_units(tmp_path: Path) -> None:
    assert verify(tmp_path / "root", shipped()) == ""


@pytest.mark.parametrize(
    ("unit", "good", "bad", "said"),
    [
        (PATH_UNIT, "PathExists=", "PathExist=", "Unknown key 'PathExist'"),
        (PATH_UNIT, "Unit=gatescan-updater.service", "Unit=gatescan-updater", "gatescan-updater"),
        (SERVICE, "Type=oneshot", "Type=oneshoot", "oneshoot"),
    ],
)
def test_verify_reports_a_mistyped_updater_unit(
    tmp_path: Path, unit: str, good: str, bad: str, said: str
) -> None:
    texts = shipped()
    assert good in texts[unit]
    texts[unit] = texts[unit].replace(good, bad)
    assert said in verify(tmp_path / "root", texts)


def test_the_updater_is_sandboxed_to_what_it_needs() -> None:
    score, exposed = security(UNITS_DIR / SERVICE)
    assert score <= CEILING, score
    assert exposed == set(STILL_OPEN)


def test_the_units_watch_and_write_where_the_updater_reads_and_writes() -> None:
    """The paths in the units are device/update/layout.py's on a gate (root "/")."""
    layout = Layout(Path("/"))
    path_unit = shipped()[PATH_UNIT]
    assert f"PathExists={layout.request}" in path_unit.splitlines()
    service = shipped()[SERVICE].splitlines()
    assert f"ExecStart={layout.current}/bin/gatescan update --from-request" in service
    assert f"StateDirectory={layout.state.name}" in service
    assert f"ReadWritePaths={layout.opt}" in service
    assert f"ReadWritePaths=-{layout.agent_data}" in service
