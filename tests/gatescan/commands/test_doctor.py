"""`gatescan doctor` as a technician runs it (its own process): one line per check, `--json` for
scripts, exit 0 when no check fails, 1 when one does, 2 for a usage error."""

from __future__ import annotations

import json
import re
from pathlib import Path

from device.diagnosis.doctor import CHECKS
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from tests.support.cli import run_gatescan

LINE = re.compile(r"^(OK|WARN|FAIL) ([a-z]+): \S.*$")


def gate_config(folder: Path, mqtt: str = "") -> Path:
    write_replay_folder(folder / "frames", [None], frame_size=(320, 240))
    path = folder / "gate.toml"
    path.write_text(
        'device_id = "gate-cli"\n[camera]\ntype = "replay"\nfolder = "frames"\nloop = true\n'
        + mqtt,
        encoding="utf-8",
    )
    (folder / "data").mkdir()
    return path


def test_a_working_gate_exits_0_with_one_line_per_check(
    tmp_path: Path, broker: LocalBroker
) -> None:
    config = gate_config(tmp_path, f'[mqtt]\nbroker = "{broker.url}"\n')

    done = run_gatescan(["doctor", "--config", str(config), "--data-dir", str(tmp_path / "data")])

    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [LINE.match(line).group(2) for line in lines if LINE.match(line)] == list(CHECKS)
    assert len(lines) == len(CHECKS)
    assert not any(line.startswith("FAIL") for line in lines)
    assert "disk: " in done.stdout and str(tmp_path / "data") in done.stdout


def test_json_for_scripts_and_exit_1_when_a_check_fails(tmp_path: Path) -> None:
    config = gate_config(tmp_path)  # no broker, no identity: setup mode

    done = run_gatescan(
        ["doctor", "--json", "--config", str(config), "--data-dir", str(tmp_path / "data")]
    )

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert [check["name"] for check in report["checks"]] == list(CHECKS)
    identity = report["checks"][1]
    assert identity["level"] == "FAIL" and "setup mode" in identity["found"]
    assert "enrolment card" in identity["fix"]
    assert set(report["checks"][0]) == {"level", "name", "found", "fix"}


def test_a_usage_error_exits_2(tmp_path: Path) -> None:
    done = run_gatescan(["doctor", "--no-such-flag"])

    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr
