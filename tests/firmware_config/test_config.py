"""The gate config: defaults, TOML and YAML, flags, secrets, and errors a technician can fix."""

import json
import socket
import textwrap
from pathlib import Path

import pytest

from firmware_config.errors import ConfigError
from firmware_config.loader import ConfigOverrides, camera_from_source, load_config
from firmware_config.schema import (
    DoorConfig,
    GateConfig,
    JournalConfig,
    OpenCVCamera,
    Picamera2Camera,
    ReplayCamera,
    device_id_for_hostname,
    device_id_for_machine,
    read_machine_id,
)
from protocol.broker_url import BrokerAddress
from protocol.verdicts import CredentialType, Direction
from tests.support.paths import PROJECT_ROOT

TOML_EXAMPLE = PROJECT_ROOT / "docs" / "config-example.toml"
YAML_EXAMPLE = PROJECT_ROOT / "deploy" / "gate.example.yaml"
NO_ENV: dict[str, str] = {}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path | None, **kwargs: object) -> list[str]:
    """The lines a technician sees for this config."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=NO_ENV, **kwargs)  # type: ignore[arg-type]
    return str(caught.value).splitlines()


# --- defaults and file formats --------------------------------------------------------------------


def test_no_file_gives_the_documented_defaults() -> None:
    config = load_config(env=NO_ENV)

    assert config.device_id == device_id_for_machine(socket.gethostname(), read_machine_id())
    assert config.direction is Direction.IN
    assert config.data_dir == Path("/var/lib/gatescan")
    assert config.camera == Picamera2Camera(width=1280, height=720, fps=30.0)
    assert config.decoder.backend == "auto"
    assert config.policy.mode == "log"
    assert config.policy.accept == [CredentialType.CCCD, CredentialType.PASS, CredentialType.RAW]
    assert config.policy.record_raw_text is False
    assert (config.indicator.green, config.indicator.red, config.indicator.buzzer) == (17, 27, 22)
    assert config.mqtt.broker is None  # no default broker: setup mode, unless enrolled
    assert config.mqtt.password() is None


def test_a_broker_given_is_the_broker_used() -> None:
    config = load_config(overrides=ConfigOverrides(broker="mqtt://localhost"), env=NO_ENV)
    assert config.mqtt.address == BrokerAddress("localhost", 1883, tls=False)


@pytest.mark.parametrize(
    ("hostname", "machine_id", "device_id"),
    [
        ("raspberrypi", "3f2a9c1b77d04e0f9a1b2c3d4e5f6a7b\n", "gate-raspberrypi-3f2a9c1b"),
        ("raspberrypi", "0123abcd00000000000000000000ffff", "gate-raspberrypi-0123abcd"),
        ("lobby", "", "gate-lobby"),  # no machine id: the hostname alone
        ("x" * 100, "3f2a9c1b77d04e0f", "gate-" + "x" * 50 + "-3f2a9c1b"),
    ],
)
def test_default_device_id_tells_two_stock_pis_apart_by_their_machine_id(
    hostname: str, machine_id: str, device_id: str
) -> None:
    assert device_id_for_machine(hostname, machine_id) == device_id
    assert GateConfig(device_id=device_id).device_id == device_id


def test_two_pis_with_the_stock_hostname_get_different_device_ids() -> None:
    first = device_id_for_machine("raspberrypi", "a" * 32)
    second = device_id_for_machine("raspberrypi", "b" * 32)
    assert first != second


def test_tls_files_without_a_broker_say_to_name_the_broker(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[mqtt]\nca_file = "ca.crt"\n')
    [line] = problems(path)
    assert line.startswith(f"{path}: mqtt.ca_file: ca_file is set but no broker is")


@pytest.mark.parametrize(
    ("hostname", "device_id"),
    [
        ("raspberrypi", "gate-raspberrypi"),
        ("Lobby Pi #2", "gate-Lobby-Pi-2"),
        ("gate-lobby.local", "gate-lobby"),
        ("___", "gate"),
        ("x" * 100, "gate-" + "x" * 59),
    ],
)
def test_default_device_id_is_a_valid_name_made_from_the_hostname(
    hostname: str, device_id: str
) -> None:
    assert device_id_for_hostname(hostname) == device_id
    assert GateConfig(device_id=device_id).device_id == device_id


def test_toml_and_yaml_files_with_the_same_settings_give_the_same_config(tmp_path: Path) -> None:
    toml_file = write(
        tmp_path,
        "gate.toml",
        """\
        device_id = "gate-lobby-1"
        direction = "out"
        [camera]
        type = "opencv"
        target = "/dev/video2"
        width = 1920
        [policy]
        mode = "access"
        accept = ["cccd"]
        [indicator]
        relay = 23
        buzzer = 24
        [mqtt]
        broker = "mqtts://broker.example.org"
        username = "gate-lobby-1"
        """,
    )
    yaml_file = write(
        tmp_path,
        "gate.yml",
        """\
        device_id: gate-lobby-1
        direction: out
        camera: {type: opencv, target: /dev/video2, width: 1920}
        policy:
          mode: access
          accept: [cccd]
        indicator: {relay: 23, buzzer: 24}
        mqtt:
          broker: mqtts://broker.example.org
          username: gate-lobby-1
        """,
    )

    from_toml = load_config(toml_file, env=NO_ENV)

    assert from_toml == load_config(yaml_file, env=NO_ENV)
    assert from_toml.camera == OpenCVCamera(target="/dev/video2", width=1920)
    assert from_toml.mqtt.address == BrokerAddress("broker.example.org", 8883, tls=True)
    assert from_toml.indicator.relay == 23


@pytest.mark.parametrize("example", [TOML_EXAMPLE, YAML_EXAMPLE], ids=["toml", "yaml"])
def test_example_configs_load_and_show_the_defaults(example: Path) -> None:
    config = load_config(example, env=NO_ENV)

    assert config == GateConfig(device_id=config.device_id)


@pytest.mark.parametrize("example", [TOML_EXAMPLE, YAML_EXAMPLE], ids=["toml", "yaml"])
def test_example_configs_mention_every_setting(example: Path) -> None:
    text = example.read_text(encoding="utf-8")
    models = [GateConfig, Picamera2Camera, OpenCVCamera, ReplayCamera] + [
        GateConfig.model_fields[section].annotation
        for section in ("decoder", "policy", "indicator", "mqtt", "journal")
    ]
    models.append(DoorConfig)
    separator = " =" if example.suffix == ".toml" else ":"

    missing = [
        f"{model.__name__}.{name}"  # type: ignore[union-attr]
        for model in models
        for name in model.model_fields  # type: ignore[union-attr]
        if f"{name}{separator}" not in text
        and f"[{name}]" not in text  # [section] in TOML
        and f".{name}]" not in text  # [section.subsection] in TOML
    ]

    assert missing == []


@pytest.mark.parametrize("backend", ["auto", "ensemble", "zxing", "pyzbar"])
def test_decoder_backend_accepts_every_decoder_the_gate_can_build(
    tmp_path: Path, backend: str
) -> None:
    path = write(tmp_path, "gate.toml", f"[decoder]\nbackend = '{backend}'\n")

    assert load_config(path, env=NO_ENV).decoder.backend == backend


def test_decoder_backend_is_ensemble_when_misspelt_close_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[decoder]\nbackend = 'ensamble'\n")

    assert problems(path)[0].endswith("got 'ensamble'; did you mean 'ensemble'?")


def test_journal_section_sets_history_size_and_retention(tmp_path: Path) -> None:
    defaults = load_config(env=NO_ENV).journal
    toml_file = write(tmp_path, "gate.toml", "[journal]\nhistory_max_entries = 500\n")
    yaml_file = write(tmp_path, "gate.yaml", "journal:\n  retention_days: 90\n")

    assert (defaults.history_max_entries, defaults.retention_days) == (2000, 30)
    assert load_config(toml_file, env=NO_ENV).journal == JournalConfig(history_max_entries=500)
    assert load_config(yaml_file, env=NO_ENV).journal == JournalConfig(retention_days=90)


def test_a_misspelt_journal_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[journal]\nretention = 7\n")

    assert problems(path) == [
        f"{path}: journal.retention: unknown key; did you mean 'retention_days'?"
    ]


def test_site_id_may_be_vietnamese(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", 'site_id = "Bệnh viện Chợ Rẫy – cổng 2"\n')

    assert load_config(path, env=NO_ENV).site_id == "Bệnh viện Chợ Rẫy – cổng 2"


def test_a_file_saved_with_a_windows_bom_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_bytes('\ufeffsite_id = "Chợ Lớn"\n'.encode())

    assert load_config(path, env=NO_ENV).site_id == "Chợ Lớn"


def test_relative_paths_in_the_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    path = write(
        tmp_path,
        "gate.toml",
        """\
        data_dir = "journal"
        [camera]
        type = "replay"
        folder = "frames"
        """,
    )

    config = load_config(path, env=NO_ENV)

    assert config.data_dir == tmp_path / "journal"
    assert config.camera == ReplayCamera(folder=tmp_path / "frames")


# --- errors a technician reads --------------------------------------------------------------------


def test_an_unknown_key_suggests_the_closest_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[camera]\ntype = "picamera2"\nfsp = 15\n')

    assert problems(path) == [f"{path}: camera.fsp: unknown key; did you mean 'fps'?"]


def test_an_unknown_key_with_no_close_match_lists_the_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[decoder]\nspeed = 3\n")

    assert problems(path) == [
        f"{path}: decoder.speed: unknown key; valid keys here: backend, repeat_window"
    ]


def test_a_key_in_the_wrong_place_names_where_it_belongs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gate.yaml",
        """\
        broker: mqtt://collector:1883
        camera:
          type: picamera2
          target: /dev/video0
        mqtt:
          site_id: lobby
        """,
    )

    assert problems(path) == [
        f"{path}: camera.target: unknown key for type 'picamera2'; "
        "'target' is a setting of type 'opencv'",
        f"{path}: mqtt.site_id: unknown key here; "
        "'site_id' is a top-level key (in TOML: above the first [section])",
        f"{path}: broker: unknown key; did you mean 'mqtt.broker'?",
    ]


def test_a_pin_used_twice_is_named_with_both_uses(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[indicator]\nbuzzer = 17\n")

    assert problems(path) == [f"{path}: indicator.green: pin 17 is used for both green and buzzer"]


def test_a_pin_outside_the_header_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[indicator]\nrelay = 40\n")

    assert problems(path) == [f"{path}: indicator.relay: must be at most 27, got 40"]


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        (
            "mqtt:/host",
            "'mqtt:/host' is not a broker URL; use mqtt://host:port or mqtts://host:port",
        ),
        ("tcp://host:1883", "'tcp://host:1883' is not a broker URL; use mqtt://host:port or "),
        ("mqtt://host:99999", "'mqtt://host:99999' has a bad port; use a number 1..65535"),
        ("mqtt://host/gates", "'mqtt://host/gates' has a path or query; use mqtt://host:port"),
        (
            "mqtt://gate:s3cret@host",
            "'mqtt://gate:***@host' holds a user name or password; set mqtt.username and put the "
            "password in the file named by mqtt.password_file, a systemd credential named "
            "mqtt_password, or the GATESCAN_MQTT_PASSWORD variable",
        ),
        ("mqtt://host:0", "'mqtt://host:0' has a bad port; use a number 1..65535"),
    ],
)
def test_a_bad_broker_url_says_what_a_good_one_looks_like(
    tmp_path: Path, broker: str, message: str
) -> None:
    path = write(tmp_path, "gate.toml", f'[mqtt]\nbroker = "{broker}"\n')

    [line] = problems(path)

    assert line.startswith(f"{path}: mqtt.broker: {message}")
    assert "s3cret" not in line


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://10.0.0.5", BrokerAddress("10.0.0.5", 1883, tls=False)),
        ("mqtts://broker.example.org", BrokerAddress("broker.example.org", 8883, tls=True)),
        ("mqtt://[::1]:1884", BrokerAddress("::1", 1884, tls=False)),
    ],
)
def test_the_broker_setting_gives_host_port_and_tls(url: str, address: BrokerAddress) -> None:
    assert GateConfig.model_validate({"mqtt": {"broker": url}}).mqtt.address == address


def test_a_password_in_the_file_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[mqtt]\npassword = "hunter2"\n')

    [line] = problems(path)

    assert line.startswith(f"{path}: mqtt.password: a password never goes in the config file;")
    assert "password_file" in line
    assert "GATESCAN_MQTT_PASSWORD" in line
    assert "hunter2" not in line


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", 'site_id = "a"\n\n[policy]\nmode = log\n')

    assert problems(path) == [
        f'{path}: line 4: invalid TOML: invalid value at column 8 (text needs quotes: mode = "log")'
    ]


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.yaml", "camera:\n  type: picamera2\n\twidth: 640\n")

    [line] = problems(path)

    assert line.startswith(f"{path}: line 3: invalid YAML: ")
    assert line.endswith("(indent with spaces, not tabs)")


def test_a_yaml_key_given_twice_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(
        tmp_path, "gate.yaml", "mqtt:\n  broker: mqtt://a\nsite_id: x\nmqtt:\n  keepalive: 30\n"
    )

    assert problems(path) == [
        f"{path}: line 4: invalid YAML: duplicate key 'mqtt' (first at line 1)"
    ]


def test_an_unknown_camera_type_lists_the_types_and_suggests_one(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[camera]\ntype = "picam"\n')

    assert problems(path) == [
        f"{path}: camera.type: 'picam' is not one of picamera2, opencv, replay; "
        "did you mean 'picamera2'?"
    ]


def test_a_camera_without_a_type_asks_for_one(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[camera]\nwidth = 640\n")

    assert problems(path) == [
        f"{path}: camera.type: missing; choose one of picamera2, opencv, replay"
    ]


def test_a_wrong_choice_lists_the_choices_and_suggests_one(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[policy]\nmode = "logs"\naccept = ["CCCD", "ticket"]\n')

    assert problems(path) == [
        f"{path}: policy.mode: expected one of 'log', 'access', got 'logs'; did you mean 'log'?",
        f"{path}: policy.accept[0]: expected one of 'cccd', 'pass', 'raw', got 'CCCD'; "
        "did you mean 'cccd'?",
        f"{path}: policy.accept[1]: expected one of 'cccd', 'pass', 'raw', got 'ticket'",
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('device_id = "gate 1"', "device_id: 'gate 1' is not allowed; use 1 to 64 letters,"),
        ('site_id = "' + "x" * 65 + '"', "site_id: must be at most 64 characters, got 'xxx"),
        ("log_level = 3", "log_level: expected one of 'debug', 'info', 'warning', 'error', got 3"),
        (
            '[decoder]\nrepeat_window = "soon"',
            "decoder.repeat_window: expected a number, got 'soon'",
        ),
        ("[decoder]\nrepeat_window = -1", "decoder.repeat_window: must be at least 0, got -1"),
        ("[indicator]\nenabled = 1.5", "indicator.enabled: expected true or false, got 1.5"),
        ("[policy]\naccept = []", "policy.accept: must hold at least 1 item(s)"),
        ('[policy]\naccept = ["raw", "raw"]', "policy.accept: 'raw' is listed twice"),
        ('mqtt = "mqtt://host"', "mqtt: expected a section of keys, got 'mqtt://host'"),
        ("[mqtt]\nkeepalive = 1", "mqtt.keepalive: must be at least 2, got 1"),
        ("[journal]\nretention_days = 0", "journal.retention_days: must be at least 1, got 0"),
        (
            "[journal]\nhistory_max_entries = 2.5",
            "journal.history_max_entries: expected a whole number, got 2.5",
        ),
        ('[camera]\ntype = "replay"', "camera.folder: missing; this key is required"),
    ],
)
def test_each_bad_value_is_explained_in_plain_words(
    tmp_path: Path, setting: str, message: str
) -> None:
    path = write(tmp_path, "gate.toml", setting + "\n")

    [line] = problems(path)

    assert line.startswith(f"{path}: {message}")


def test_every_problem_is_reported_at_once_without_a_traceback(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gate.toml",
        """\
        direction = "inn"
        [camera]
        type = "picamera2"
        fsp = 15
        [mqtt]
        broker = "mqtt:/host"
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path, env=NO_ENV)

    assert str(caught.value).splitlines() == [
        f"{path}: direction: expected one of 'in', 'out', got 'inn'; did you mean 'in'?",
        f"{path}: camera.fsp: unknown key; did you mean 'fps'?",
        f"{path}: mqtt.broker: 'mqtt:/host' is not a broker URL; "
        "use mqtt://host:port or mqtts://host:port",
    ]
    assert len(caught.value.problems) == 3
    assert caught.value.__suppress_context__  # pydantic's own error is not chained in
    assert "pydantic" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path / "gate.toml") == [f"no such config file: {tmp_path / 'gate.toml'}"]


def test_a_file_of_another_kind_names_the_accepted_suffixes(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.json", "{}")

    assert problems(path) == [
        f"{path}: unknown kind of config file '.json'; use .toml, .yaml, .yml"
    ]


def test_a_yaml_file_that_is_a_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.yaml", "- site_id: a\n")

    assert problems(path) == [
        f"{path}: expected settings such as 'site_id: ...' at the top level, got a list"
    ]


def test_an_empty_yaml_file_means_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.yaml", "# nothing set yet\n")

    assert load_config(path, env=NO_ENV) == load_config(env=NO_ENV)


def test_a_replay_folder_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[camera]\ntype = "replay"\nfolder = "frames"\n')

    assert problems(path) == [f"{path}: camera.folder: no such folder: {tmp_path / 'frames'}"]


# --- the agent's flags ----------------------------------------------------------------------------

FILE_WITH_EVERYTHING_SET = """\
    device_id = "gate-from-file"
    data_dir = "/srv/gate"
    [camera]
    type = "opencv"
    target = "/dev/video0"
    width = 1920
    height = 1080
    [mqtt]
    broker = "mqtt://file-broker:1883"
    """


def test_flags_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", FILE_WITH_EVERYTHING_SET)
    flags = ConfigOverrides(
        source="/dev/video1",
        broker="mqtt://127.0.0.1:1884",
        device_id="gate-test",
        data_dir=Path("scratch"),
    )

    config = load_config(path, overrides=flags, env=NO_ENV)

    assert config.device_id == "gate-test"
    assert config.data_dir == Path("scratch")  # a flag is relative to where the agent runs
    assert config.mqtt.address == BrokerAddress("127.0.0.1", 1884, tls=False)
    assert config.camera == OpenCVCamera(target="/dev/video1", width=1920, height=1080)


def test_a_source_of_another_type_starts_from_that_types_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", FILE_WITH_EVERYTHING_SET)

    config = load_config(path, overrides=ConfigOverrides(source="picamera2"), env=NO_ENV)

    assert config.camera == Picamera2Camera()


def test_flags_without_a_file_apply_to_the_defaults() -> None:
    flags = ConfigOverrides(broker="mqtt://10.1.2.3", device_id="gate-7")

    config = load_config(overrides=flags, env=NO_ENV)

    assert (config.device_id, config.mqtt.broker) == ("gate-7", "mqtt://10.1.2.3")


def test_a_bad_flag_is_blamed_on_the_flag_beside_the_files_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", "[decoder]\nbackend = 'zbar'\n")
    flags = ConfigOverrides(source="webcam", broker="mqtt:/x")

    lines = problems(path, overrides=flags)

    assert lines[0].startswith("--source: 'webcam' is not a camera source; use picamera2, replay:")
    assert lines[1:] == [
        f"{path}: decoder.backend: expected one of 'auto', 'ensemble', 'zxing', 'pyzbar', "
        "got 'zbar'; "
        "did you mean 'pyzbar'?",
        "--broker: mqtt.broker: 'mqtt:/x' is not a broker URL; "
        "use mqtt://host:port or mqtts://host:port",
    ]


# --- camera_from_source: the --source flag --------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["/dev/video0", "/dev/video12", "0", "2", "rtsp://10.0.0.9:554/live", "https://cam/x"]
)
def test_camera_sources_that_opencv_opens(target: str) -> None:
    assert camera_from_source(target) == OpenCVCamera(target=target)


def test_an_existing_video_file_is_an_opencv_source(tmp_path: Path) -> None:
    video = tmp_path / "entrance.mp4"
    video.write_bytes(b"\x00")

    assert camera_from_source(str(video)) == OpenCVCamera(target=str(video))


def test_picamera2_source_is_the_pi_camera() -> None:
    assert camera_from_source("picamera2") == Picamera2Camera()


def test_a_replay_source_takes_a_folder_and_options() -> None:
    assert camera_from_source("replay:frames") == ReplayCamera(folder=Path("frames"))
    assert camera_from_source("replay:frames?hold=0.5&fps=20&loop=1") == ReplayCamera(
        folder=Path("frames"), hold=0.5, fps=20, loop=True
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("webcam", "--source: 'webcam' is not a camera source; use picamera2, replay:FOLDER, "),
        ("", "--source: '' is not a camera source;"),
        ("replay:", "--source: replay needs a folder: replay:FOLDER"),
        ("replay:f?speed=2", "--source: unknown replay option 'speed'; use fps, hold, loop"),
        ("replay:f?hold=0", "--source: hold: must be more than 0, got '0'"),
    ],
)
def test_a_bad_source_names_the_accepted_forms(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        camera_from_source(spec)

    assert str(caught.value).startswith(message)


def test_a_folder_given_as_a_source_suggests_replay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        camera_from_source(str(tmp_path))

    assert (
        str(caught.value)
        == f"--source: {str(tmp_path)!r} is a folder; to show its images use replay:{tmp_path}"
    )


# --- the MQTT password ----------------------------------------------------------------------------


@pytest.fixture
def config_with_password_file(tmp_path: Path) -> Path:
    (tmp_path / "mqtt_password").write_text("from-file\n", encoding="utf-8")
    return write(tmp_path, "gate.toml", '[mqtt]\npassword_file = "mqtt_password"\n')


def test_the_password_comes_from_password_file_next_to_the_config(
    config_with_password_file: Path,
) -> None:
    config = load_config(config_with_password_file, env=NO_ENV)

    assert config.mqtt.password() == "from-file"
    assert "from-file" not in repr(config)
    assert "from-file" not in config.model_dump_json()


def test_a_systemd_credential_beats_password_file(
    config_with_password_file: Path, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text("from-systemd", encoding="utf-8")

    config = load_config(config_with_password_file, env={"CREDENTIALS_DIRECTORY": str(credentials)})

    assert config.mqtt.password() == "from-systemd"


def test_the_environment_beats_every_other_password_source(
    config_with_password_file: Path, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text("from-systemd", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "GATESCAN_MQTT_PASSWORD": "from-env"}

    assert load_config(config_with_password_file, env=env).mqtt.password() == "from-env"


def test_a_missing_or_empty_password_file_is_reported(tmp_path: Path) -> None:
    missing = write(tmp_path, "gate.toml", '[mqtt]\npassword_file = "nope"\n')
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    empty = write(tmp_path, "gate2.toml", '[mqtt]\npassword_file = "empty"\n')

    assert problems(missing) == [
        f"{missing}: mqtt.password_file: cannot read {tmp_path / 'nope'}: No such file or directory"
    ]
    assert problems(empty) == [f"{empty}: mqtt.password_file: {tmp_path / 'empty'} is empty"]


def test_a_door_input_on_an_output_pin_is_a_config_error(tmp_path: Path) -> None:
    text = "[indicator]\nrelay = 23\n[indicator.door]\nfire_alarm_pin = 23\n"
    path = write(tmp_path, "gate.toml", text)

    assert problems(path) == [
        f"{path}: indicator.relay: pin 23 is used for both relay and door.fire_alarm_pin"
    ]


def test_two_door_inputs_on_one_pin_are_a_config_error(tmp_path: Path) -> None:
    text = "[indicator]\nrelay = 23\n[indicator.door]\nfire_alarm_pin = 5\nrelease_button_pin = 5\n"
    path = write(tmp_path, "gate.toml", text)

    assert problems(path) == [
        f"{path}: indicator.door.fire_alarm_pin: pin 5 is used for both "
        "door.fire_alarm_pin and door.release_button_pin"
    ]


def test_a_door_setting_without_a_relay_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "gate.toml", '[indicator.door]\nfail = "safe"\n')

    assert problems(path) == [
        f"{path}: indicator.door.fail: door.fail is set but there is no door relay: set "
        "indicator.relay (its BCM pin)"
    ]


def test_a_misspelt_fail_mode_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path, "gate.toml", '[indicator]\nrelay = 23\n[indicator.door]\nfail = "saef"\n'
    )

    [problem] = problems(path)
    assert problem.startswith(f"{path}: indicator.door.fail: expected one of 'secure', 'safe'")
    assert "did you mean 'safe'" in problem


def test_a_door_config_loads(tmp_path: Path) -> None:
    text = (
        "[indicator]\nrelay = 23\nrelay_seconds = 5\n"
        '[indicator.door]\nfail = "safe"\nfire_alarm_pin = 5\nrelease_button_pin = 6\n'
    )
    door = load_config(write(tmp_path, "gate.toml", text), env={}).indicator.door

    assert (door.fail, door.fire_alarm_pin, door.release_button_pin) == ("safe", 5, 6)


def test_a_gate_never_accepts_self_check_ins(tmp_path: Path) -> None:
    """`self` is a self check-in's credential type (server/checkin/): no gate reads it, so its
    config refuses it as any unknown kind, and never lists it among the choices."""
    from firmware_config.schema import PolicyConfig
    from protocol.verdicts import GATE_CREDENTIAL_TYPES

    assert CredentialType.SELF not in GATE_CREDENTIAL_TYPES
    assert set(CredentialType) - set(GATE_CREDENTIAL_TYPES) == {CredentialType.SELF}
    with pytest.raises(ValueError, match="'cccd', 'pass' or 'raw'"):
        PolicyConfig(accept=["self"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        PolicyConfig(accept=[CredentialType.SELF])
    schema = PolicyConfig.model_json_schema()
    assert "self" not in json.dumps(schema)
