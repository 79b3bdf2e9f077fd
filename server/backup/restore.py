"""`gatescan restore DIR --to SITE_DIR`: a backup put back, on this machine or a new one.

    restore_backup(RestoreRequest(Path("/srv/backups/2026-03-01"), Path("/etc/gatescan/site")))
        -> Restored

Before anything is written: every file's SHA-256 is checked against the manifest, and an
installation (or a database) already where the backup would go is refused unless `force`. Then
the installation's files are written with their modes (keys and passwords 0600, the broker's
data folder 0700), mosquitto.conf is made to name the new folder (its paths are absolute) and
this machine's dynamic security plugin, the broker's files are given to the `mosquitto` user as
`site init` does, and the database is put back where server.toml (or `--db`) says.

The gates need nothing: the CA, the broker's certificate and every gate's login are the ones
they already hold.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from firmware_config.errors import ConfigError
from server.backup.databases import check_target, database_kind, load_database, shown_url
from server.backup.manifest import SITE_FOLDER, BackedUpFile, BackupError, Manifest
from server.site.broker_config import CONF_NAME, BrokerFiles
from server.site.dynsec_config import PLUGIN_NAME, find_plugin
from server.site.installation import SERVER_CONFIG_NAME, give_broker_its_files
from server.site.server_config import load_server_config

_PLUGIN_LINE = re.compile(r"^plugin (\S+)$", re.M)


@dataclass(frozen=True)
class RestoreRequest:
    backup: Path
    to: Path  # the installation's folder to write
    db: str | None = None  # where the database goes; None: as the backup's server.toml says
    force: bool = False


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    files: BrokerFiles
    written: tuple[Path, ...]
    database: str  # where the database went (a password left out)
    broker_owner: str | None


def restore_backup(request: RestoreRequest) -> Restored:
    manifest = Manifest.read(request.backup)
    problems = manifest.check(request.backup)
    if problems:
        raise BackupError(
            f"{request.backup} does not match its manifest; nothing restored:\n  "
            + "\n  ".join(problems)
        )
    files = BrokerFiles.under(request.to)
    site_entries = [entry for entry in manifest.files if entry.site_path is not None]
    dumps = [entry for entry in manifest.files if entry.site_path is None]
    if len(dumps) != 1 or not any(e.site_path == Path(SERVER_CONFIG_NAME) for e in site_entries):
        raise BackupError(f"{request.backup}: the manifest lacks the database or server.toml")
    if files.folder.exists() and not files.folder.is_dir():
        raise BackupError(f"{files.folder} is a file, not a folder")
    existing = [
        str(entry.site_path)
        for entry in site_entries
        if (files.folder / str(entry.site_path)).exists()
    ]
    if existing and not request.force:
        raise BackupError(
            f"{files.folder} already holds an installation ({', '.join(existing)}); not"
            " replacing it: add --force to replace it"
        )
    db = request.db or _configured_db(request.backup, files.folder)
    if database_kind(db) != manifest.database_kind:
        raise BackupError(
            f"the backup holds a {manifest.database_kind} database; {shown_url(db)} is not one"
        )
    check_target(db, request.force)

    files.folder.mkdir(parents=True, exist_ok=True)
    files.persistence.mkdir(mode=0o700, exist_ok=True)
    files.persistence.chmod(0o700)
    written = [_write(request.backup, entry, files) for entry in site_entries]
    _point_conf_here(files.conf, manifest.site_dir, files.folder)
    owner = give_broker_its_files(files)
    [dump] = dumps
    where = load_database(request.backup / dump.path, db, dump.mode)
    return Restored(manifest, files, tuple(written), where, owner)


def _configured_db(backup: Path, folder: Path) -> str:
    """The database the backup's server.toml names, its relative paths taken from `folder`."""
    try:
        config = load_server_config(backup / SITE_FOLDER / SERVER_CONFIG_NAME, folder=folder)
    except ConfigError as exc:
        raise BackupError(f"the backup's server.toml cannot be read:\n{exc}") from None
    if config.db is None:
        raise BackupError("the backup's server.toml names no db: say where it goes with --db")
    return config.db


def _write(backup: Path, entry: BackedUpFile, files: BrokerFiles) -> Path:
    target = files.folder / str(entry.site_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = (backup / entry.path).read_bytes()
    partial = target.with_name(target.name + ".restoring")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, entry.mode & 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    partial.chmod(entry.mode)
    os.replace(partial, target)
    return target


def _point_conf_here(conf: Path, old_folder: str, folder: Path) -> None:
    """mosquitto.conf names its files by absolute path: the new folder's, and the dynamic
    security plugin where this machine has it."""
    if not conf.is_file() or conf.name != CONF_NAME:
        return
    text = conf.read_text(encoding="utf-8")
    if old_folder != str(folder):
        text = text.replace(old_folder, str(folder))
    plugin = find_plugin()
    if plugin != PLUGIN_NAME:
        text = _PLUGIN_LINE.sub(f"plugin {plugin}", text)
    conf.write_text(text, encoding="utf-8")
