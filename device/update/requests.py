"""The updater's two small files: the request the agent may write, and the result it may read.

The agent runs sandboxed (no /opt, no root): to ask for an update it writes
`update-request.json` into its own data dir (`request_update`), and the updater's path unit
(deploy/systemd/gatescan-updater.path) starts `gatescan update --from-request` as root. The
updater takes the request (reads it without following links, removes it) and trusts nothing in
it but a version and a source: a URL, or the name of a file the agent downloaded into
`updates/` in its data dir. Whatever the source, the bundle's signature decides.

The updater's answer is `result.json` in its own folder (root's, readable by all), replaced
whole: {"outcome": "updated" | "update_failed" | "update_refused", "version", "from",
"running", "reason", "at", and the seconds taken}. The agent reads it with `read_result` to
carry it in its telemetry (`telemetry_result`: protocol/messages.py's `UpdateResult`).

The `update` remote command (issue 17) reaches the updater through `remote_update`: a version
and an http(s) URL checked, the request written, and the answer's detail given back; the agent's
handler (device/app.py's `gate_actions`) only wraps it in an answer.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.system.atomic_files import write_atomically
from protocol.messages import UpdateResult
from protocol.release_bundle import is_version
from protocol.text import printable

DOWNLOADS = "updates"  # in the agent's data dir: bundles the agent fetched itself
MAX_REQUEST_BYTES = 4096
MAX_RESULT_BYTES = 16384


class BadRequest(ValueError):
    """The request file is not one the updater acts on; the message says why."""


@dataclass(frozen=True)
class UpdateRequest:
    version: str
    source: str  # an http(s) URL or a path
    allow_downgrade: bool = False


def request_update(
    data_dir: Path, version: str, source: str, *, allow_downgrade: bool = False
) -> Path:
    """Ask the updater for release `version` from `source` (an http(s) URL, or the name of a
    bundle already in DATA_DIR/updates/). For the agent's remote-command worker: returns at
    once; the result comes later in the updater's result file."""
    _check(version, source)
    body = {"version": version, "source": source, "allow_downgrade": allow_downgrade}
    path = data_dir / "update-request.json"
    write_atomically(path, json.dumps(body).encode("utf-8") + b"\n")
    return path


def take_request(path: Path, data_dir: Path) -> UpdateRequest:
    """The request at `path`, removed; BadRequest for anything but a plain small file holding a
    version and a source. A source that names a file becomes its path under DATA_DIR/updates/."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            path.unlink(missing_ok=True)  # a link or a folder: removed, so it fires no more
        raise BadRequest(f"no request to take at {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise BadRequest(f"{path} is not a regular file")
            raw = file.read(MAX_REQUEST_BYTES + 1)
    finally:
        path.unlink(missing_ok=True)
    if len(raw) > MAX_REQUEST_BYTES:
        raise BadRequest(f"{path} is over {MAX_REQUEST_BYTES} bytes")
    try:
        body = json.loads(raw)
        version, source = body["version"], body["source"]
        allow = body.get("allow_downgrade", False)
        if not (isinstance(version, str) and isinstance(source, str) and isinstance(allow, bool)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise BadRequest(f"{path} is not a request (version, source)") from None
    _check(version, source)
    if not _is_url(source):
        source = str(data_dir / DOWNLOADS / source)
    return UpdateRequest(version=version, source=source, allow_downgrade=allow)


def _check(version: str, source: str) -> None:
    if not is_version(version):
        raise BadRequest(f"version {version!r} is not a release version")
    if _is_url(source):
        return
    if "/" in source or source in ("", ".", "..") or source.startswith("."):
        raise BadRequest(
            f"source {source!r}: an http(s) URL, or a file name in the data dir's {DOWNLOADS}/"
        )


def _is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(result, sort_keys=True).encode("utf-8") + b"\n", 0o644)


def read_result(path: Path) -> dict[str, Any] | None:
    """The updater's last result, for the agent's status; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            body = json.loads(file.read(MAX_RESULT_BYTES))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def remote_update(
    data_dir: Path, version: object, source: str | None, running: str, allow_downgrade: object
) -> str:
    """The `update` command's request for the updater: `version` (the command's
    args["version"]) and `source` (its own field, an http(s) URL: a remote command never names
    a file on the gate) checked, the request written. Returns the `accepted` answer's detail;
    BadRequest says why the gate refuses (the updater's result comes later, in the telemetry)."""
    if not isinstance(version, str) or not is_version(version):
        raise BadRequest("args.version: a release version (like 0.2.0) is needed")
    if source is None or not _is_url(source):
        raise BadRequest("source: the bundle's http(s) URL is needed")
    if version == running:
        raise BadRequest(f"already running {version}")
    try:
        request_update(data_dir, version, source, allow_downgrade=allow_downgrade is True)
    except OSError as exc:
        raise BadRequest(f"cannot write the request: {exc.strerror}") from None
    return f"asked the updater for {version}"


def telemetry_result(path: Path) -> UpdateResult | None:
    """The updater's last result as the telemetry carries it; None when there is none or it is
    not one (a result file is root's, but read as untrusted text all the same)."""
    found = read_result(path)
    if found is None:
        return None
    fields = {
        "outcome": printable(str(found.get("outcome", "")), 40),
        "version": printable(str(found.get("version", "")), 40),
        "from_version": None if found.get("from") is None else printable(str(found["from"]), 40),
        "reason": printable(str(found.get("reason") or ""), 160),
    }
    for at in (found.get("at"), None):  # a time that is not one is left out, not the result
        try:
            return UpdateResult(**fields, at=at)
        except ValidationError:
            continue
    return None
