"""The identity a gate was granted at enrolment, kept in its data directory.

    store_identity(data_dir, grant) -> StoredIdentity    atomically, files 0600
    load_identity(data_dir) -> StoredIdentity | None      None: not enrolled (setup mode)
    forget_identity(data_dir) -> bool                     a factory reset: setup mode again

Two files under `data_dir/identity/`: `ca.crt` (the CA its broker's certificate is checked
against) and `grant.json` (the `EnrolmentGrant`, broker password included). `grant.json` is
written last: its presence is what makes a gate enrolled, so a gate killed in the middle is
either enrolled in full or not at all. Each file is written to a temp file (0600), fsync'd,
renamed over its name, and the folder fsync'd: never half-written.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from device.system.atomic_files import fsync_directory, write_atomically
from protocol.enrolment import EnrolmentGrant

log = logging.getLogger("gatescan.enrolment")

IDENTITY_DIR = "identity"
GRANT_FILE = "grant.json"
CA_FILE = "ca.crt"
FILE_MODE = 0o600
DIR_MODE = 0o700


class IdentityError(OSError):
    """The identity cannot be written (the message names the file and why)."""


@dataclass(frozen=True)
class StoredIdentity:
    grant: EnrolmentGrant
    ca_file: Path


def identity_dir(data_dir: Path) -> Path:
    return data_dir / IDENTITY_DIR


def load_identity(data_dir: Path) -> StoredIdentity | None:
    """The stored identity, or None when the gate has none. A grant file that cannot be read as
    one (damaged by hand or by the card) is kept aside, logged, and counts as none: the gate goes
    back to setup mode rather than running as half of an identity."""
    folder = identity_dir(data_dir)
    grant_path = folder / GRANT_FILE
    try:
        text = grant_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.error("identity: cannot read %s (%s): setup mode", grant_path, error.strerror)
        return None
    try:
        grant = EnrolmentGrant.model_validate_json(text)
    except ValidationError as error:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = grant_path.with_name(f"{GRANT_FILE}.damaged-{stamp}")
        with contextlib.suppress(OSError):
            grant_path.rename(aside)
        log.error(
            "identity: %s is not a grant (%d problems); kept aside as %s: setup mode",
            grant_path,
            error.error_count(),
            aside.name,
        )
        return None
    ca_path = folder / CA_FILE
    ca_pem = grant.ca_pem.encode("utf-8")
    try:
        current = ca_path.read_bytes()
    except OSError:
        current = None
    if current != ca_pem:  # written before the grant: only a hand or a bad card changes it
        log.warning("identity: %s was missing or changed; written again from the grant", ca_path)
        try:
            write_atomically(ca_path, ca_pem, FILE_MODE)
        except OSError as error:
            log.error("identity: cannot write %s (%s)", ca_path, error.strerror)
    return StoredIdentity(grant, ca_path)


def store_identity(data_dir: Path, grant: EnrolmentGrant) -> StoredIdentity:
    """Keep `grant` as this gate's identity; IdentityError if the disk refuses."""
    folder = identity_dir(data_dir)
    try:
        folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fsync_directory(folder.parent)
        ca_path = folder / CA_FILE
        write_atomically(ca_path, grant.ca_pem.encode("utf-8"), FILE_MODE)
        grant_json = grant.model_dump_json(indent=2).encode("utf-8")
        write_atomically(folder / GRANT_FILE, grant_json, FILE_MODE)
    except OSError as error:
        raise IdentityError(f"cannot store the identity in {folder}: {error}") from error
    return StoredIdentity(grant, ca_path)


def forget_identity(data_dir: Path) -> bool:
    """Remove the gate's identity (a factory reset): the grant first, so a gate stopped half way
    is not enrolled (setup mode), then the CA and the folder. False when there was none.
    IdentityError if the disk refuses."""
    folder = identity_dir(data_dir)
    if not folder.exists():
        return False
    try:
        (folder / GRANT_FILE).unlink(missing_ok=True)
        fsync_directory(folder)
        for leftover in folder.iterdir():  # the CA, a damaged grant kept aside, a temp file
            leftover.unlink()
        folder.rmdir()
        fsync_directory(folder.parent)
    except OSError as error:
        raise IdentityError(f"cannot remove the identity in {folder}: {error}") from error
    return True
