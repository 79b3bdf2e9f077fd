"""Settings pushed from the dashboard (issue 17): which keys may be pushed, the precedence after a
reboot (defaults < file < push < flags), every problem named with where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_config.errors import ConfigError
from firmware_config.loader import ConfigOverrides, config_with_pushed, load_config
from firmware_config.pushed import (
    PUSHABLE,
    PUSHED_FILE,
    check_pushed,
    nested,
    pushed_bytes,
    read_pushed,
)
from firmware_config.schema import GateConfig


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    path = tmp_path / "gate.toml"
    path.write_text(
        'device_id = "gate-1"\ndata_dir = "data"\n'
        '[camera]\ntype = "replay"\nfolder = "."\n'
        '[decoder]\nrepeat_window = 4\n[policy]\nmode = "log"\n',
        encoding="utf-8",
    )
    return path


def test_the_push_lies_over_the_file_and_the_flags_over_both(config_file: Path) -> None:
    pushed = {"policy.mode": "access", "decoder.repeat_window": 1.5, "direction": "out"}
    config = load_config(config_file, env={}, pushed=pushed)
    assert (config.policy.mode, config.decoder.repeat_window) == ("access", 1.5)
    assert config.direction.value == "out"
    assert config.camera.type == "replay", "what the push does not name stays the file's"

    flagged = load_config(config_file, env={}, pushed=pushed, overrides=ConfigOverrides(mode="log"))
    assert flagged.policy.mode == "log", "--mode beats a push"
    assert flagged.decoder.repeat_window == 1.5


def test_a_bad_value_is_blamed_on_the_push_not_the_file(config_file: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(
            config_file,
            env={},
            pushed={"camera.roi": [0.5, 0, 0.9, 1], "policy.accept": ["cccd", "pasport"]},
        )
    lines = str(raised.value).splitlines()
    assert lines == [
        "the pushed settings: camera.roi: x + width and y + height must be at most 1 "
        "(the frame): got [0.5, 0.0, 0.9, 1.0]",
        "the pushed settings: policy.accept[1]: expected one of 'cccd', 'pass', 'raw', "
        "got 'pasport'",
    ]


def test_a_camera_key_pushed_to_a_gate_whose_file_has_no_camera_section(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(f'device_id = "gate-1"\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
    config = load_config(path, env={}, pushed={"camera.roi": [0.25, 0, 0.5, 1]})
    assert (config.camera.type, config.camera.roi) == ("picamera2", [0.25, 0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("device_id", "cannot be pushed: the gate's identity comes from enrolment"),
        ("site_id", "cannot be pushed: the gate's site comes from enrolment"),
        ("mqtt.broker", "cannot be pushed: where and as whom the gate reports"),
        ("indicator.relay", "cannot be pushed: the pins are the file's"),
        ("policy.mod", "cannot be pushed; did you mean 'policy.mode'?"),
        ("camera.fps", "cannot be pushed"),
    ],
)
def test_only_pushable_keys_pass_and_identity_never_does(key: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_pushed({key: "x", "policy.mode": "access"})
    [problem] = raised.value.problems
    assert (problem.source, problem.path) == ("the pushed settings", key)
    assert problem.message.startswith(says), problem.message


def test_every_pushable_key_is_a_key_of_the_config() -> None:
    config = GateConfig(device_id="gate-1")
    for key in PUSHABLE:
        value: object = config
        for name in key.split("."):
            value = getattr(value, name)  # raises for a key the model does not have
    check_pushed(dict.fromkeys(PUSHABLE, 1))


def test_nested_is_the_file_s_shape() -> None:
    assert nested({"policy.mode": "access", "direction": "out", "policy.accept": ["cccd"]}) == {
        "policy": {"mode": "access", "accept": ["cccd"]},
        "direction": "out",
    }


def test_the_kept_push_is_read_back_and_a_broken_file_is_an_error(tmp_path: Path) -> None:
    assert read_pushed(tmp_path) == {}
    settings = {"policy.mode": "access", "camera.roi": [0.25, 0, 0.5, 1]}
    (tmp_path / PUSHED_FILE).write_bytes(pushed_bytes(settings))
    assert read_pushed(tmp_path) == settings
    for text, says in (
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"device_id": "gate-evil"}', "cannot be pushed"),
        (b" " * 20000, "is over 16384 bytes"),
    ):
        (tmp_path / PUSHED_FILE).write_bytes(text)
        with pytest.raises(ConfigError, match=says):
            read_pushed(tmp_path)


def test_a_gate_without_a_file_takes_the_push_over_its_config() -> None:
    base = GateConfig(device_id="gate-1", mqtt={"broker": "mqtt://localhost:1883"})
    base = base.model_copy(update={"mqtt": base.mqtt.with_password("secret")})
    pushed = config_with_pushed(base, {"mqtt.telemetry_interval": 5, "policy.mode": "access"})
    assert (pushed.mqtt.telemetry_interval, pushed.policy.mode) == (5, "access")
    assert pushed.mqtt.password() == "secret", "the broker password is kept"
    assert config_with_pushed(base, {}) == base
    with pytest.raises(ConfigError, match=r"the pushed settings: mqtt\.telemetry_interval"):
        config_with_pushed(base, {"mqtt.telemetry_interval": -5})


def test_a_source_flag_keeps_the_region_every_camera_shares(config_file: Path) -> None:
    """--source picks another camera (the demo's, the tests'): its size and rate are the flag's,
    but the region of interest and decode scale, fractions of any frame, stay the push's."""
    flags = ConfigOverrides(source="/dev/video0")
    config = load_config(
        config_file, env={}, pushed={"camera.roi": [0.25, 0, 0.5, 1]}, overrides=flags
    )
    assert (config.camera.type, config.camera.roi) == ("opencv", [0.25, 0.0, 0.5, 1.0])
