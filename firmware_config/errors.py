"""Config problems a technician can act on: file, key path, what is wrong, what to write instead.

    ConfigError(ValueError)      raised by load_config and camera_from_source
      .problems: list[Problem]   every problem found, not just the first

pydantic's ValidationError is translated here, entry by entry, into one line each:
`gate.toml: camera.fsp: unknown key; did you mean 'fps'?`. The walk over the schema (to name the
valid keys at a path) follows the models themselves, so a new field needs no change here.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from protocol.topics import DEVICE_ID_PATTERN

Keys = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, located by source (file or flag), line and/or dotted key path."""

    source: str
    message: str
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = [self.source, f"line {self.line}" if self.line else "", self.path]
        return ": ".join([part for part in where if part] + [self.message])


class ConfigError(ValueError):
    """The configuration cannot be used; str() lists every problem, one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def dotted(keys: Keys) -> str:
    """('policy', 'accept', 1) -> 'policy.accept[1]'."""
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else key
    return text


def problems_from_validation(
    error: ValidationError, root: type[BaseModel], origin: Callable[[Keys], str]
) -> list[Problem]:
    """One Problem per pydantic error; `origin` names the file or flag a key path came from."""
    problems = []
    for detail in error.errors():
        spot = _locate(root, detail["loc"])
        keys, ctx = spot.keys, detail.get("ctx") or {}
        if detail["type"] in ("union_tag_invalid", "union_tag_not_found"):
            keys += (str(ctx["discriminator"]).strip("'"),)
        elif "field" in ctx:  # a model validator names the key to blame in its context
            keys += (str(ctx["field"]),)
        message = _explain(detail, spot, root)
        problems.append(Problem(origin(keys), message, path=dotted(keys)))
    return problems


# --- walking the schema ---------------------------------------------------------------------------


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_members(tp: Any) -> list[type[BaseModel]]:
    if get_origin(tp) not in (Union, types.UnionType):
        return []
    return [arg for arg in get_args(tp) if _is_model(arg)]


def _tag_of(model: type[BaseModel]) -> str | None:
    """The value of the Literal field that picks this model out of a discriminated union."""
    for field in model.model_fields.values():
        if get_origin(field.annotation) is Literal and len(get_args(field.annotation)) == 1:
            return str(get_args(field.annotation)[0])
    return None


@dataclass(frozen=True)
class _Spot:
    keys: Keys  # the keys the technician wrote
    owner: Any  # the type the last key was looked up in (a model, unless the path is bad)
    here: Any  # the type found at the end of the path


def _locate(root: type[BaseModel], loc: tuple[str | int, ...]) -> _Spot:
    """Follow pydantic's loc through the schema.

    A discriminated union adds its tag to loc ('camera', 'picamera2', 'fps'); the technician never
    wrote that level, so it is followed but left out of the keys.
    """
    keys: list[str | int] = []
    here: Any = root
    owner: Any = None
    for part in loc:
        owner = here
        member = next((m for m in _union_members(here) if _tag_of(m) == part), None)
        if member is not None:
            here = member
            continue
        keys.append(part)
        if _is_model(here) and part in here.model_fields:
            here = here.model_fields[part].annotation
        elif isinstance(part, int) and get_origin(here) in (list, tuple):
            here = get_args(here)[0]
        elif isinstance(part, str) and get_origin(here) is dict:  # a table of named sections
            here = get_args(here)[1]
        else:
            here = None
    return _Spot(tuple(keys), owner, here)


def _sections(root: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel]]]:
    """(name, model) for every section, one per alternative of a discriminated union."""
    for name, field in root.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield name, field.annotation
        for member in _union_members(field.annotation):
            yield name, member


# --- explaining one error -------------------------------------------------------------------------

_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text in quotes",
    "list_type": "a list",
    "path_type": "a path in quotes",
    "model_type": "a section of keys",
    "model_attributes_type": "a section of keys",
    "dict_type": "a section of keys",
}
_LIMITS = {
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be more than {gt}",
    "less_than": "must be less than {lt}",
    "string_too_long": "must be at most {max_length} characters",
}
_PATTERN_HINTS = {
    DEVICE_ID_PATTERN: "use 1 to 64 letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
}
PASSWORD_HOMES = (
    "the file named by mqtt.password_file, a systemd credential named mqtt_password, "
    "or the GATESCAN_MQTT_PASSWORD variable"
)
_SECRET_HINT = f"a password never goes in the config file; put it in {PASSWORD_HOMES}"


def _explain(detail: Any, spot: _Spot, root: type[BaseModel]) -> str:
    kind, ctx, value = detail["type"], detail.get("ctx") or {}, detail.get("input")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {show(value)}"
    if kind in _LIMITS:
        limits = {name: show(limit) for name, limit in ctx.items()}
        return f"{_LIMITS[kind].format(**limits)}, got {show(value)}"
    if kind == "extra_forbidden":
        return _unknown_key(str(spot.keys[-1]), spot.owner, root)
    if kind == "missing":
        return "missing; this key is required"
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        listed = ", ".join(f"'{choice}'" for choice in choices)
        return f"expected one of {listed}, got {show(value)}{_did_you_mean(value, choices)}"
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = ctx.get("tag")
        return f"{tag!r} is not one of {', '.join(tags)}{_did_you_mean(tag, tags)}"
    if kind == "union_tag_not_found":
        tags = [str(_tag_of(member)) for member in _union_members(spot.here)]
        return f"missing; choose one of {', '.join(tags)}"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str(ctx.get("pattern")), f"it must match {ctx.get('pattern')}")
        return f"{show(value)} is not allowed; {hint}"
    if kind == "too_short":
        return f"must hold at least {ctx.get('min_length', 1)} item(s)"
    if kind == "too_long":
        return f"must hold at most {ctx.get('max_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    return str(detail["msg"])


def _unknown_key(key: str, owner: Any, root: type[BaseModel]) -> str:
    if key.lower() in ("password", "passwd", "mqtt_password"):
        return _SECRET_HINT
    if not _is_model(owner):
        return "unknown key"
    valid = list(owner.model_fields)
    close = get_close_matches(key.lower(), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    homes = [(name, section) for name, section in _sections(root) if key in section.model_fields]
    for name, section in homes:
        if owner in _union_members(root.model_fields[name].annotation):
            kind, other = _tag_of(owner), _tag_of(section)
            return f"unknown key for type '{kind}'; '{key}' is a setting of type '{other}'"
    if owner is not root and key in root.model_fields:
        return f"unknown key here; '{key}' is a top-level key (in TOML: above the first [section])"
    if homes:
        return f"unknown key; did you mean '{homes[0][0]}.{key}'?"
    return f"unknown key; valid keys here: {', '.join(valid)}"


def _did_you_mean(value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = get_close_matches(value.lower(), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def show(value: object) -> str:
    """A value as the technician would recognise it from the file (short, no Python-isms)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a section of keys"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
