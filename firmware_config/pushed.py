"""Settings pushed from the dashboard (issue 17): which keys may be pushed, how a push lies over
the config file, and its file in the gate's data dir.

    check_pushed({"policy.mode": "access"})   -> None, or ConfigError naming each key refused
    nested({"policy.mode": "access"})         -> {"policy": {"mode": "access"}}
    read_pushed(data_dir)                     -> the settings last pushed ({} when none)

A push is the whole set: it replaces the previous one, and `{}` takes every pushed setting back.
Only the keys in PUSHABLE may be pushed: each is one a running gate applies between two frames,
without a restart (device/live_config.py). Who the gate is and where it reports (device_id,
site_id, mqtt.*) come from enrolment and the file, never from a push; what needs the camera or the
pins opened again (camera type, size, pins) is the file's.

After a reboot the gate's config is, lowest first: the defaults, the file, the pushed settings,
the agent's flags; and an enrolled gate's identity over all of them (docs/operations.md,
"Changing a gate's settings").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from firmware_config.errors import ConfigError, Problem

PUSHED_FILE = "pushed_config.json"  # in the data dir
PUSHED_SOURCE = "the pushed settings"  # how a problem names where a key came from
MAX_PUSHED_FILE_BYTES = 16384

# What each pushable key changes in a running gate (shown on the dashboard beside the field).
PUSHABLE: dict[str, str] = {
    "direction": "in: an entrance; out: an exit (the events' direction, presence at the gate)",
    "policy.mode": "log: record everyone; access: grant valid passes and allowed cards only",
    "policy.accept": "the kinds of code the gate accepts: cccd, pass, raw",
    "policy.record_raw_text": "store the text of non-CCCD codes (personal data)",
    "decoder.backend": "auto, ensemble, zxing or pyzbar",
    "decoder.repeat_window": "seconds within which the same code is the same showing",
    "camera.roi": "the region decoded, [x, y, width, height] as fractions of the frame",
    "camera.decode_scale": "the region's scale before decoding, 0.2 to 1",
    "mqtt.telemetry_interval": "seconds between two telemetry reports",
}
# Keys a push may never hold, and why (checked before the suggestion of a close key).
NEVER_PUSHED = {
    "device_id": "the gate's identity comes from enrolment",
    "site_id": "the gate's site comes from enrolment",
    "data_dir": "where the journal lives is the file's",
    "mqtt": "where and as whom the gate reports comes from enrolment and the file",
    "indicator": "the pins are the file's: they are opened at start",
    "journal": "the journal's files are the file's",
}


def check_pushed(settings: Mapping[str, object]) -> None:
    """ConfigError naming every key that may not be pushed (with why, or the key meant); the
    values are the gate's config model's to check, over the file (load_config's `pushed`)."""
    problems = [
        Problem(PUSHED_SOURCE, _refusal(key), path=key) for key in settings if key not in PUSHABLE
    ]
    if problems:
        raise ConfigError(problems)


def _refusal(key: str) -> str:
    top = key.split(".", 1)[0]
    why = NEVER_PUSHED.get(key) or NEVER_PUSHED.get(top)
    if why is not None:
        return f"cannot be pushed: {why}"
    close = get_close_matches(key, PUSHABLE, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"cannot be pushed{hint} (pushable: {', '.join(PUSHABLE)})"


def nested(settings: Mapping[str, Any]) -> dict[str, Any]:
    """{"policy.mode": "access", "direction": "out"} -> {"policy": {"mode": "access"},
    "direction": "out"}: the shape of the config file."""
    tree: dict[str, Any] = {}
    for key, value in settings.items():
        *sections, name = key.split(".")
        table = tree
        for section in sections:
            table = table.setdefault(section, {})
        table[name] = value
    return tree


def overlay(raw: dict[str, Any], settings: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Write the pushed settings into the file's `raw` dict (a section copied before it is
    changed); return the key paths they set, to blame a problem on the push."""
    keys: list[tuple[str, ...]] = []
    for key, value in settings.items():
        *sections, name = key.split(".")
        table = raw
        for section in sections:
            table[section] = dict(table[section]) if isinstance(table.get(section), dict) else {}
            table = table[section]
        table[name] = value
        keys.append((*sections, name))
    return keys


def pushed_path(data_dir: Path) -> Path:
    return data_dir / PUSHED_FILE


def read_pushed(data_dir: Path) -> dict[str, Any]:
    """The settings last pushed to this gate, {} when none were; ConfigError for a file that is
    not a JSON object of pushable keys (never silently half-read)."""
    path = pushed_path(data_dir)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PUSHED_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError([Problem(str(path), f"cannot be read: {error.strerror}")]) from None
    if len(data) > MAX_PUSHED_FILE_BYTES:
        raise ConfigError([Problem(str(path), f"is over {MAX_PUSHED_FILE_BYTES} bytes")])
    try:
        settings = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(str(path), f"is not JSON: {error}")]) from None
    if not isinstance(settings, dict):
        raise ConfigError([Problem(str(path), "is not a JSON object of settings")])
    check_pushed(settings)
    return settings


def pushed_bytes(settings: Mapping[str, Any]) -> bytes:
    """The file's content for `settings`: sorted, one line."""
    return json.dumps(dict(settings), sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
