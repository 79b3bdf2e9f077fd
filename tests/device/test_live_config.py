"""A gate's settings changed live (device/live_config.py): a push checked over the file, kept,
then applied; a refused push or file changes nothing; what only a restart applies is named."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from device.live_config import LiveConfig, kept_push
from firmware_config.loader import load_config
from firmware_config.pushed import PUSHED_FILE
from firmware_config.schema import GateConfig

FILE = """device_id = "gate-1"
data_dir = "data"
[camera]
type = "replay"
folder = "."
fps = 10
[decoder]
repeat_window = 4
"""


class Gate:
    """The file, the data dir, and what the agent was asked to apply."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "gate.toml"
        self.file.write_text(FILE, encoding="utf-8")
        self.data_dir = folder / "data"
        self.data_dir.mkdir()
        self.applied: list[GateConfig] = []
        self.live = LiveConfig(
            self.load({}),
            load=self.load,
            apply=self.applied.append,
            data_dir=self.data_dir,
        )

    def load(self, pushed: Mapping[str, Any]) -> GateConfig:
        return load_config(self.file, env={}, pushed=pushed)

    def kept(self) -> Any:
        return json.loads((self.data_dir / PUSHED_FILE).read_text(encoding="utf-8"))


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path)


def test_a_push_is_kept_then_applied_and_names_what_changed(gate: Gate) -> None:
    outcome = gate.live.push({"policy.mode": "access", "decoder.repeat_window": 1.5})
    assert (outcome.status, outcome.detail) == (
        "done",
        "applied live: policy.mode, decoder.repeat_window",
    )
    assert gate.kept() == {"decoder.repeat_window": 1.5, "policy.mode": "access"}
    [applied] = gate.applied
    assert (applied.policy.mode, applied.decoder.repeat_window) == ("access", 1.5)
    assert gate.live.running == applied
    assert applied == gate.load(gate.kept()), "what runs is what a reboot would run"

    again = gate.live.push({"policy.mode": "access", "decoder.repeat_window": 1.5})
    assert (again.status, again.detail) == ("done", "nothing to apply live")
    assert len(gate.applied) == 1


def test_an_empty_push_takes_every_pushed_setting_back(gate: Gate) -> None:
    gate.live.push({"policy.mode": "access"})
    outcome = gate.live.push({})
    assert (outcome.status, outcome.detail) == ("done", "applied live: policy.mode")
    assert gate.live.running.policy.mode == "log" and gate.kept() == {}


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"device_id": "gate-evil"}, "device_id: cannot be pushed"),
        ({"decoder.repeat_window": -1}, "decoder.repeat_window: must be at least 0"),
        ({"policy.accept": ["cccd", "cccd"]}, "'cccd' is listed twice"),
        ({"camera.roi": [0, 0, 2, 1]}, "camera.roi: the numbers are fractions"),
    ],
)
def test_a_refused_push_changes_nothing_and_says_why(
    gate: Gate, settings: dict[str, Any], says: str
) -> None:
    gate.live.push({"policy.mode": "access"})
    before = gate.live.running
    outcome = gate.live.push(settings)
    assert outcome.status == "refused"
    assert outcome.detail.startswith("the gate goes on as it ran; problems: the pushed settings")
    assert says in outcome.detail, outcome.detail
    assert gate.live.running == before and len(gate.applied) == 1
    assert gate.kept() == {"policy.mode": "access"}, "the kept push is the last good one"


def test_a_push_that_cannot_be_kept_is_not_applied(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    gate.data_dir.rmdir()
    gate.data_dir.write_text("not a folder")  # the data dir's disk refuses the file
    outcome = gate.live.push({"policy.mode": "access"})
    assert outcome.status == "failed" and "none applied" in outcome.detail
    assert gate.applied == [] and gate.live.running.policy.mode == "log"


def test_reload_applies_the_file_s_live_keys_and_names_the_rest_for_the_restart(
    gate: Gate,
) -> None:
    gate.live.push({"policy.mode": "access"})
    text = FILE.replace("repeat_window = 4", "repeat_window = 2").replace("fps = 10", "fps = 5")
    gate.file.write_text(text + '[policy]\nmode = "log"\n', encoding="utf-8")
    outcome = gate.live.reload()
    assert (outcome.status, outcome.detail) == (
        "done",
        "applied live: decoder.repeat_window; at the next restart: camera",
    )
    running = gate.live.running
    assert running.decoder.repeat_window == 2
    assert running.policy.mode == "access", "the push still lies over the file"
    assert running.camera.fps == 10, "a camera's rate waits for the restart"


def test_reload_of_a_broken_file_changes_nothing(gate: Gate) -> None:
    gate.file.write_text(FILE.replace("repeat_window", "repeat_windw"), encoding="utf-8")
    outcome = gate.live.reload()
    assert outcome.status == "refused" and "repeat_windw" in outcome.detail
    assert "did you mean 'repeat_window'" in outcome.detail
    assert gate.applied == []


def test_a_broken_kept_push_never_keeps_a_gate_from_starting(tmp_path: Path) -> None:
    (tmp_path / PUSHED_FILE).write_text('{"site_id": "other"}', encoding="utf-8")
    assert kept_push(tmp_path) == {}
