"""Read a gate's config file, apply the agent's command-line flags, and find the MQTT password.

    load_config(path, overrides=..., env=...) -> GateConfig     or ConfigError listing every problem
    camera_from_source("replay:frames?hold=0.5") -> CameraConfig   the agent's --source flag
    find_mqtt_password(env, password_file) -> str | None   or PasswordFileError (the collector too)

The file is TOML or YAML (by suffix). Relative paths in it are relative to the file's folder, so
a config and its password file can travel together on the SD card. Flags beat the file. The
password comes from, in order: $GATESCAN_MQTT_PASSWORD, the systemd credential `mqtt_password`
($CREDENTIALS_DIRECTORY), the file named by mqtt.password_file; never from the config itself.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import ValidationError

from firmware_config.errors import ConfigError, Keys, Problem, dotted, problems_from_validation
from firmware_config.pushed import PUSHED_SOURCE, overlay
from firmware_config.schema import (
    CameraConfig,
    CameraSection,
    GateConfig,
    OpenCVCamera,
    Picamera2Camera,
    ReplayCamera,
    read_secret,
)
from protocol.broker_tls import BrokerTlsError, client_tls_context

PASSWORD_ENV = "GATESCAN_MQTT_PASSWORD"
CREDENTIAL_NAME = "mqtt_password"  # systemd: LoadCredential=mqtt_password:/etc/gatescan/...
SUFFIXES = (".toml", ".yaml", ".yml")
Origin = Callable[[Keys], str]  # names the file or flag a key path came from
_PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("data_dir",),
    ("mqtt", "password_file"),
    ("mqtt", "ca_file"),
    ("mqtt", "cert_file"),
    ("mqtt", "key_file"),
    ("camera", "folder"),
)


@dataclass(frozen=True)
class ConfigOverrides:
    """The agent's flags: --source, --broker mqtt://host:port, --device-id, --data-dir, --mode."""

    source: str | None = None
    broker: str | None = None
    device_id: str | None = None
    data_dir: Path | None = None
    mode: str | None = None  # --mode access|log: policy.mode


def load_config(
    path: Path | None = None,
    *,
    overrides: ConfigOverrides | None = None,
    env: Mapping[str, str] = os.environ,
    pushed: Mapping[str, Any] | None = None,
) -> GateConfig:
    """The gate's config: defaults, then the file (if any), then the settings pushed from the
    dashboard (firmware_config/pushed.py; checked with check_pushed first), then the flags.
    ConfigError if bad, each problem naming the file, the push or the flag it came from."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _with_anchored_paths(read_config_file(path), path.parent)
    problems: list[Problem] = []
    if pushed and "camera" not in raw and any(key.startswith("camera.") for key in pushed):
        raw["camera"] = {"type": Picamera2Camera().type}  # the default camera, as without a push
    pushed_keys = overlay(raw, pushed) if pushed else []
    flagged = _apply_overrides(raw, overrides or ConfigOverrides(), problems)

    def origin(keys: Keys) -> str:
        flags = [flag for flag, prefix in flagged if keys[: len(prefix)] == prefix]
        if flags:
            return flags[0]
        if any(keys[: len(prefix)] == prefix for prefix in pushed_keys):
            return PUSHED_SOURCE
        return str(path) if path is not None else "defaults"

    try:
        config = GateConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(problems + problems_from_validation(error, GateConfig, origin)) from None
    password = _find_password(config, env, origin, problems)
    problems += _missing_folders(config, origin)
    problems += _unusable_tls_files(config, origin)
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"mqtt": config.mqtt.with_password(password)})


def config_with_pushed(base: GateConfig, pushed: Mapping[str, Any]) -> GateConfig:
    """`base` with the pushed settings over it, for a gate that has no file to read again (the
    demo, tests): ConfigError naming the push for a value the model refuses."""
    # What was set, not every default: a default dumped would count as set (door.fail).
    raw = base.model_dump(exclude_unset=True)
    raw["device_id"] = base.device_id
    raw["camera"] = {**raw.get("camera", {}), "type": base.camera.type}
    overlay(raw, pushed)
    try:
        config = GateConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, GateConfig, _from_push)) from None
    return config.model_copy(update={"mqtt": config.mqtt.with_password(base.mqtt.password())})


def _from_push(_keys: Keys) -> str:
    return PUSHED_SOURCE


# The sections a gate needs to report itself (who and where it is, its broker, its data dir).
REPORTING_KEYS = ("device_id", "site_id", "location", "direction", "data_dir", "mqtt")


def load_reporting_part(
    path: Path | None,
    *,
    overrides: ConfigOverrides | None = None,
    env: Mapping[str, str] = os.environ,
) -> GateConfig | None:
    """When the whole config cannot be used: a config of its reporting sections alone (and its
    indicator pins, when those are usable too; every other section at its default), so that a
    gate can still light its own pins and tell its broker about its config fault; else None."""
    try:
        raw = _with_anchored_paths(read_config_file(path), path.parent) if path else {}
    except ConfigError:
        return None
    given = overrides or ConfigOverrides()
    flags = ConfigOverrides(broker=given.broker, device_id=given.device_id, data_dir=given.data_dir)
    _apply_overrides(raw, flags, [])
    part = {key: raw[key] for key in REPORTING_KEYS if key in raw}
    config = _valid_or_none({**part, "indicator": raw.get("indicator", {})}) or _valid_or_none(part)
    if config is None:
        return None
    try:
        password = find_mqtt_password(env, config.mqtt.password_file)
    except PasswordFileError:
        return None
    if _unusable_tls_files(config, lambda keys: ""):
        return None
    return config.model_copy(update={"mqtt": config.mqtt.with_password(password)})


def _valid_or_none(raw: dict[str, Any]) -> GateConfig | None:
    try:
        return GateConfig.model_validate(raw)
    except ValidationError:
        return None


# --- the file -------------------------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's settings as plain data, or ConfigError (missing, unreadable, bad syntax)."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        kinds = ", ".join(SUFFIXES)
        raise ConfigError([Problem(name, f"unknown kind of config file {suffix!r}; use {kinds}")])
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: Windows editors add a BOM
    except FileNotFoundError:
        raise ConfigError([Problem("", f"no such config file: {name}")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(name, "is a folder, not a config file")]) from None
    except OSError as error:
        raise ConfigError([Problem(name, f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text (byte {error.start}); save the file as UTF-8"
        raise ConfigError([Problem(name, message)]) from None
    data = _parse_toml(text, name) if suffix == ".toml" else _parse_yaml(text, name)
    if data is None:  # a YAML file of comments only: all defaults
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        message = f"expected settings such as 'site_id: ...' at the top level, got a {kind}"
        raise ConfigError([Problem(name, message)])
    return data


_TOML_WHERE = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _parse_toml(text: str, name: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _TOML_WHERE.match(str(error))
        if found is None:
            raise ConfigError([Problem(name, f"invalid TOML: {error}")]) from None
        what = found["what"][:1].lower() + found["what"][1:]
        message = f"invalid TOML: {what} at column {found['column']}"
        if what == "invalid value":  # nearly always text without quotes: mode = log
            message += ' (text needs quotes: mode = "log")'
        raise ConfigError([Problem(name, message, line=int(found["line"]))]) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice (safe_load silently keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in first_line:
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key '{key}' (first at line {first_line[key]})",
                problem_mark=key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        what = str(error.problem or error.context or "syntax error")
        if "'\\t'" in what:
            what += " (indent with spaces, not tabs)"
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(name, f"invalid YAML: {what}", line=line)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([Problem(name, f"invalid YAML: {error}")]) from None


def _with_anchored_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file's folder, not to where the agent runs."""
    anchored = {
        key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()
    }
    for keys in _PATH_KEYS:
        *sections, key = keys
        table: dict[str, Any] = anchored
        for section in sections:
            inner = table.get(section)
            table = inner if isinstance(inner, dict) else {}
        value = table.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            table[key] = str(base / value)
    return anchored


# --- flags ----------------------------------------------------------------------------------------


def _apply_overrides(
    raw: dict[str, Any], overrides: ConfigOverrides, problems: list[Problem]
) -> list[tuple[str, Keys]]:
    """Write the flags into `raw`; return (flag, key path) for each, to blame errors correctly."""
    flagged: list[tuple[str, Keys]] = []
    if overrides.source is not None:
        try:
            camera = camera_from_source(overrides.source)
        except ConfigError as error:
            problems.extend(error.problems)
        else:
            raw["camera"], camera_keys = _merge_camera(raw.get("camera"), camera)
            flagged += [("--source", keys) for keys in camera_keys]
    settings = (
        ("--broker", ("mqtt", "broker"), overrides.broker),
        ("--device-id", ("device_id",), overrides.device_id),
        ("--data-dir", ("data_dir",), str(overrides.data_dir) if overrides.data_dir else None),
        ("--mode", ("policy", "mode"), overrides.mode),
    )
    for flag, keys, value in settings:
        if value is None:
            continue
        *sections, key = keys
        table = raw
        for section in sections:
            table[section] = dict(table[section]) if isinstance(table.get(section), dict) else {}
            table = table[section]
        table[key] = value
        flagged.append((flag, keys))
    return flagged


def _merge_camera(file_camera: object, chosen: CameraConfig) -> tuple[dict[str, Any], list[Keys]]:
    """The file's settings for the same kind of camera still apply (size, fps); else defaults,
    but for what every camera shares, the region of interest and decode scale (fractions of any
    frame; a push's too), which stay the file's."""
    spec = {"type": chosen.type, **chosen.model_dump(exclude_unset=True)}
    if isinstance(file_camera, dict) and file_camera.get("type") == chosen.type:
        return {**file_camera, **spec}, [("camera", key) for key in spec]
    shared = {}
    if isinstance(file_camera, dict):
        shared = {key: file_camera[key] for key in CameraSection.model_fields if key in file_camera}
    return {**shared, **spec}, [("camera", key) for key in spec]


_SOURCE_FORMS = (
    "use picamera2, replay:FOLDER, /dev/videoN, a camera number such as 0, "
    "rtsp://..., http(s)://... or an existing video file"
)
_STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
_REPLAY_OPTIONS = ("fps", "hold", "loop")


def camera_from_source(spec: str) -> CameraConfig:
    """The agent's --source flag -> a camera config; ConfigError naming the accepted forms."""
    text = spec.strip()
    if text == "picamera2":
        return Picamera2Camera()
    if text.startswith("replay:"):
        return _replay_camera(text.removeprefix("replay:"))
    url = urlsplit(text)
    if re.fullmatch(r"/dev/video\d+|\d+", text) or (url.scheme in _STREAM_SCHEMES and url.netloc):
        return OpenCVCamera(target=text)
    if text and Path(text).is_dir():
        message = f"{text!r} is a folder; to show its images use replay:{text}"
        raise ConfigError([Problem("--source", message)])
    if text and Path(text).exists():
        return OpenCVCamera(target=text)
    raise ConfigError([Problem("--source", f"{text!r} is not a camera source; {_SOURCE_FORMS}")])


def _replay_camera(rest: str) -> ReplayCamera:
    folder, _, query = rest.partition("?")
    if not folder:
        raise ConfigError([Problem("--source", "replay needs a folder: replay:FOLDER")])
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = [name for name in options if name not in _REPLAY_OPTIONS]
    if unknown:
        message = f"unknown replay option {unknown[0]!r}; use {', '.join(_REPLAY_OPTIONS)}"
        raise ConfigError([Problem("--source", message)])
    try:
        return ReplayCamera.model_validate({"folder": folder, **options})
    except ValidationError as error:
        raise ConfigError(
            problems_from_validation(error, ReplayCamera, lambda _: "--source")
        ) from None


# --- after validation: things outside the file ----------------------------------------------------


class PasswordFileError(ValueError):
    """A file that should hold the MQTT password cannot be read or is empty; `path` names it."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(problem)


def find_mqtt_password(env: Mapping[str, str], password_file: Path | None = None) -> str | None:
    """The broker password of a gate or the collector, from the first place that has one:
    $GATESCAN_MQTT_PASSWORD, the systemd credential `mqtt_password` ($CREDENTIALS_DIRECTORY),
    password_file. None when none is given; PasswordFileError when a file is unreadable or empty.
    """
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return _read_password_file(Path(credentials) / CREDENTIAL_NAME)
    if password_file is None:
        return None
    return _read_password_file(password_file)


def _read_password_file(path: Path) -> str:
    try:
        password = read_secret(path)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise PasswordFileError(path, f"cannot read {path}: {reason}") from None
    if not password:  # an empty password would log in as nobody: surely a mistake
        raise PasswordFileError(path, f"{path} is empty")
    return password


def _find_password(
    config: GateConfig, env: Mapping[str, str], origin: Origin, problems: list[Problem]
) -> str | None:
    password_file = config.mqtt.password_file
    try:
        return find_mqtt_password(env, password_file)
    except PasswordFileError as error:
        if error.path == password_file:
            keys: Keys = ("mqtt", "password_file")
            problems.append(Problem(origin(keys), str(error), dotted(keys)))
        else:
            problems.append(Problem(f"systemd credential {CREDENTIAL_NAME}", str(error)))
        return None


def _unusable_tls_files(config: GateConfig, origin: Origin) -> list[Problem]:
    """A CA file, client certificate or key that is missing or not what it should be: said now,
    not as a gate that never connects."""
    if config.mqtt.broker is None or not config.mqtt.address.tls:
        return []
    try:
        client_tls_context(config.mqtt.tls)
    except BrokerTlsError as error:
        keys: Keys = ("mqtt", "cert_file" if "client certificate" in str(error) else "ca_file")
        return [Problem(origin(keys), str(error), dotted(keys))]
    return []


def _missing_folders(config: GateConfig, origin: Origin) -> list[Problem]:
    camera = config.camera
    if isinstance(camera, ReplayCamera) and not camera.folder.is_dir():
        keys: Keys = ("camera", "folder")
        return [Problem(origin(keys), f"no such folder: {camera.folder}", dotted(keys))]
    return []
