"""The gate page's settings form (issue 17): one field per key a dashboard may push
(firmware_config/pushed.py's PUSHABLE), the form read back into settings, and the settings
checked with the gate's own config model before anything is sent.

    setting_fields(current, manager=True)   -> the fields, filled with the push the gate runs
    read_form(form)                          -> settings, or ConfigError naming each field
    check_settings(settings, device_id)      -> None, or ConfigError (the gate's own model)

A field left empty is not pushed: the gate's file decides it. The form holds the whole push
(the gate replaces its previous push with it), so saving it with every field empty takes every
pushed setting back. What decides who gets in or keeps personal data (policy.*) is a manager's
to change; a technician's form shows it and sends it back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from firmware_config.errors import ConfigError, Problem
from firmware_config.loader import config_with_pushed
from firmware_config.pushed import PUSHABLE, PUSHED_SOURCE, check_pushed
from firmware_config.schema import DecoderConfig, GateConfig, PolicyConfig
from protocol.verdicts import GATE_CREDENTIAL_TYPES, Direction

Kind = Literal["choice", "yes_no", "number", "numbers", "kinds"]
MANAGERS_ONLY = frozenset({"policy.mode", "policy.accept", "policy.record_raw_text"})
YES_NO = ("true", "false")
FORM_SOURCE = "the form"


def _literal_choices(model: Any, name: str) -> tuple[str, ...]:
    return tuple(str(choice) for choice in get_args(model.model_fields[name].annotation))


# Each pushable key's kind of field, and its choices where it has them.
KINDS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "direction": ("choice", tuple(direction.value for direction in Direction)),
    "policy.mode": ("choice", _literal_choices(PolicyConfig, "mode")),
    "policy.accept": ("kinds", tuple(kind.value for kind in GATE_CREDENTIAL_TYPES)),
    "policy.record_raw_text": ("yes_no", YES_NO),
    "decoder.backend": ("choice", _literal_choices(DecoderConfig, "backend")),
    "decoder.repeat_window": ("number", ()),
    "camera.roi": ("numbers", ()),
    "camera.decode_scale": ("number", ()),
    "mqtt.telemetry_interval": ("number", ()),
}


@dataclass(frozen=True)
class SettingField:
    key: str  # the form field's name too
    kind: Kind
    choices: tuple[str, ...]
    meaning: str  # what it changes (PUSHABLE's text)
    value: str  # as the form shows it; "" for the file's
    chosen: tuple[str, ...]  # for `kinds`: the boxes ticked
    editable: bool


def setting_fields(current: Mapping[str, Any], *, manager: bool) -> list[SettingField]:
    """The form's fields, each filled with the value pushed now (`current`), if any."""
    fields = []
    for key, meaning in PUSHABLE.items():
        kind, choices = KINDS[key]
        value = current.get(key)
        chosen = tuple(str(item) for item in value) if kind == "kinds" and value else ()
        fields.append(
            SettingField(
                key=key,
                kind=kind,
                choices=choices,
                meaning=meaning,
                value=_shown(value),
                chosen=chosen,
                editable=manager or key not in MANAGERS_ONLY,
            )
        )
    return fields


def _shown(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_shown(item) for item in value)
    return str(value)


def read_form(form: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The settings a submitted form holds (each field's values as sent, a list for the
    `kinds` boxes): ConfigError naming every field that cannot be read."""
    settings: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in PUSHABLE:
        kind, choices = KINDS[key]
        values = [value.strip() for value in form.get(key, ())]
        try:
            value = _read(kind, choices, values)
        except ValueError as error:
            problems.append(Problem(FORM_SOURCE, str(error), path=key))
            continue
        if value is not None:
            settings[key] = value
    if problems:
        raise ConfigError(problems)
    return settings


def as_entered(form: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """A refused form's values, to show them again as they were typed."""
    entered: dict[str, Any] = {}
    for key in PUSHABLE:
        values = list(form.get(key, ()))
        entered[key] = values if KINDS[key][0] == "kinds" else (values[0] if values else None)
    return entered


def _read(kind: Kind, choices: tuple[str, ...], values: list[str]) -> Any:
    if kind == "kinds":
        unknown = [value for value in values if value not in choices]
        if unknown:
            raise ValueError(f"not a kind of code: {unknown[0]!r}")
        return [choice for choice in choices if choice in values] or None
    text = values[0] if values else ""
    if not text:
        return None
    if kind in ("choice", "yes_no"):
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}, not {text!r}")
        return text == "true" if kind == "yes_no" else text
    if kind == "number":
        return _number(text.replace(",", "."))  # 1,5 as Vietnamese writes it
    items = [item for item in re.split(r"[,;\s]+", text) if item]
    return [_number(item) for item in items]


def _number(text: str) -> int | float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"not a number: {text!r}")
    return int(number) if number.is_integer() else number


def check_settings(settings: Mapping[str, Any], device_id: str) -> None:
    """The gate's own checks, over the defaults rather than its file (which the server does not
    see; the gate checks the push over its file again and refuses with the problems)."""
    check_pushed(settings)
    config_with_pushed(GateConfig(device_id=device_id), settings)


def problem_lines(error: ConfigError) -> list[str]:
    """One line per problem, named by the field (the push is the form here)."""
    return [
        f"{problem.path}: {problem.message}" if problem.source in (PUSHED_SOURCE, FORM_SOURCE)
        else str(problem)
        for problem in error.problems
    ]  # fmt: skip


class ManagersOnly(PermissionError):
    """A technician's push would change what only a manager may (the keys named)."""


def as_technician(sent: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """A technician's push: the managers' keys as they are pushed now (the form shows them
    disabled, so it sends none); ManagersOnly when it sends one with another value."""
    changed = sorted(key for key in MANAGERS_ONLY if key in sent and sent[key] != current.get(key))
    if changed:
        raise ManagersOnly(", ".join(changed))
    kept = {key: value for key, value in current.items() if key in MANAGERS_ONLY}
    return {key: value for key, value in sent.items() if key not in MANAGERS_ONLY} | kept
