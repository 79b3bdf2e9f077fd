"""`gatescan backup DIR`: a consistent copy of a server installation into DIR.

    take_backup(BackupRequest(Path("/srv/backups/2026-03-01"), site_dir, db)) -> Manifest

DIR (new, or empty; made 0700) gets site/ (every file `site init` wrote that is there: the CA and
its key, the broker's and enrolment service's certificates and keys, the collector's and the
dynamic security admin's passwords, the broker's password file, ACL and config, server.toml; the
dynamic security plugin's JSON state from the broker's data folder; alerts.toml when server.toml
names one in the installation's folder), database/ (the database's consistent copy) and
manifest.json. Each file keeps its mode (keys and passwords 0600).

The broker's state and the database are copied as of the same moment: the dynamic security file
is copied before the database and compared after it, and both are taken again if a gate was
enrolled, revoked or replaced meanwhile (the plugin replaces its file whole on each change, so a
copy is never half-written). The broker's persistence (its queued messages) is not kept: the
gates' journals resend what the collector has not acknowledged.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from protocol.release import __version__
from server.backup.databases import database_kind, dump_database, shown_url, sqlite_file
from server.backup.manifest import (
    DATABASE_FOLDER,
    SITE_FOLDER,
    BackedUpFile,
    BackupError,
    Manifest,
    backed_up,
    sha256_of,
)
from server.site.broker_config import BrokerFiles
from server.site.installation import SERVER_CONFIG_NAME, planned_files

ATTEMPTS = 3  # copies of the database while the broker's state kept changing, before giving up
WHAT = {
    "ca.key": "the installation's CA key: signs the broker's and enrolment service's certificates",
    "ca.crt": "the installation's CA certificate: every gate checks the broker against it",
    "broker.key": "the broker's TLS key",
    "broker.crt": "the broker's TLS certificate, signed by the CA",
    "collector.password": "the collector's broker password",
    "mosquitto.passwd": "the broker's password file (the collector, gates kept by hand)",
    "dynsec-admin.password": "the dynamic security admin's password (the server's)",
    "dynamic-security.json": "the broker's dynamic security state: every enrolled gate's login",
    "enrol.key": "the enrolment service's TLS key",
    "enrol.crt": "the enrolment service's TLS certificate, signed by the CA",
    "gatescan.acl": "the broker's ACL",
    "mosquitto.conf": "the broker's config",
    SERVER_CONFIG_NAME: "the server's config",
}


@dataclass(frozen=True)
class BackupRequest:
    folder: Path  # the backup's folder: new or empty
    site_dir: Path  # the installation's folder (server.toml's)
    db: str  # a SQLAlchemy URL or a SQLite file
    alerts: Path | None = None  # server.toml's alerts file, kept when it is in site_dir


def take_backup(request: BackupRequest) -> Manifest:
    """Write the backup; BackupError before writing anything if it cannot be taken."""
    files = BrokerFiles.under(request.site_dir)
    kind = database_kind(request.db)
    required = (files.ca_file.with_name("ca.key"), files.ca_file, files.dynsec_config)
    missing = [str(path) for path in required if not path.is_file()]
    if missing:
        raise BackupError(
            f"{files.folder} is not a gatescan installation (no {', '.join(missing)})"
        )
    if kind == "sqlite" and not sqlite_file(request.db).is_file():
        raise BackupError(f"no SQLite database at {sqlite_file(request.db)}")
    folder = request.folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(f"{folder} is not empty: a backup goes into a new or empty folder")
    sources = [path for path in planned_files(files) if path.is_file()]
    alerts = request.alerts
    if alerts is not None and alerts.absolute().is_relative_to(files.folder) and alerts.is_file():
        sources.append(alerts.absolute())

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    site = folder / SITE_FOLDER
    database = folder / DATABASE_FOLDER
    entries: list[BackedUpFile] = []
    for path in sources:
        if path != files.dynsec_config:
            copied = _copy(path, site / path.relative_to(files.folder))
            entries.append(backed_up(folder, copied, _what(path)))
    for _attempt in range(ATTEMPTS):
        dynsec = _copy(files.dynsec_config, site / files.dynsec_config.relative_to(files.folder))
        shutil.rmtree(database, ignore_errors=True)
        database.mkdir(mode=0o700)
        dump = dump_database(request.db, database)
        if sha256_of(files.dynsec_config) == sha256_of(dynsec):
            break
        dynsec.unlink()
    else:
        raise BackupError(
            f"{files.dynsec_config} changed during each of {ATTEMPTS} copies of the database:"
            " gates are being enrolled; try again"
        )
    entries.append(backed_up(folder, dynsec, _what(dynsec)))
    entries.append(backed_up(folder, dump, f"the database ({kind}), as of one moment"))
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gatescan_version=__version__,
        site_dir=str(files.folder),
        database=shown_url(request.db),
        database_kind=kind,
        files=tuple(entries),
    )
    manifest.write(folder)
    return manifest


def _what(path: Path) -> str:
    return WHAT.get(path.name, "the alerts' config" if path.suffix == ".toml" else path.name)


def _copy(source: Path, target: Path) -> Path:
    """`source`'s bytes into a new file at `target`, with its mode from the first byte."""
    mode = source.stat().st_mode & 0o777
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = source.read_bytes()
    target.unlink(missing_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    target.chmod(mode)
    return target
