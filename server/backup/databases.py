"""The database's part of a backup: SQLite through its online backup API, PostgreSQL through
pg_dump and pg_restore.

    database_kind(url_or_path)                 -> "sqlite" | "postgresql"  (BackupError if neither)
    dump_database(url_or_path, folder)         -> the file written in folder
    load_database(file, url_or_path, force=)   -> where it went

SQLite: `sqlite3.Connection.backup` copies the pages under a read transaction, so a running
server (WAL: its writes go on) is copied as of one moment; the copy is turned into a single
self-contained file (journal_mode DELETE). PostgreSQL: `pg_dump --format=custom` is a consistent
snapshot too; the password goes to pg_dump and pg_restore in PGPASSWORD, never on their command
line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from server.backup.manifest import BackupError
from server.store.database import database_url

SQLITE_NAME = "gatescan.db"
PG_DUMP_NAME = "gatescan.pgdump"
_SIDE_FILES = ("-wal", "-shm", "-journal")


def database_kind(url_or_path: str) -> str:
    backend = database_url(url_or_path).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"--db {url_or_path}: only SQLite and PostgreSQL databases are backed up")
    return backend


def shown_url(url_or_path: str) -> str:
    """The URL as the manifest and messages show it: its password left out."""
    return database_url(url_or_path).render_as_string(hide_password=True)


def sqlite_file(url_or_path: str) -> Path:
    name = database_url(url_or_path).database
    if not name or name == ":memory:":
        raise BackupError(f"--db {url_or_path}: not a SQLite file")
    return Path(name)


def dump_database(url_or_path: str, folder: Path) -> Path:
    """A consistent copy of the database in `folder` (which exists), 0600."""
    if database_kind(url_or_path) == "sqlite":
        return _copy_sqlite(sqlite_file(url_or_path), folder / SQLITE_NAME)
    target = folder / PG_DUMP_NAME
    url, env = _libpq(database_url(url_or_path))
    _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(target), "--dbname", url], env)
    target.chmod(0o600)
    return target


def check_target(url_or_path: str, force: bool) -> None:
    """BackupError if the database to restore into holds data and `force` was not given."""
    if force:
        return
    if database_kind(url_or_path) == "sqlite":
        path = sqlite_file(url_or_path)
        if path.exists():
            raise BackupError(f"{path} already exists: not replacing it (add --force to do so)")
        return
    engine = create_engine(database_url(url_or_path))
    try:
        tables = inspect(engine).get_table_names()
    except Exception as exc:  # the driver's own errors: no such database, refused
        raise BackupError(f"cannot open {shown_url(url_or_path)}: {exc}") from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"{shown_url(url_or_path)} already holds tables ({', '.join(sorted(tables)[:5])}):"
            " not replacing them (add --force to replace them)"
        )


def load_database(dump: Path, url_or_path: str, mode: int = 0o600) -> str:
    """The backup's copy put in place of the database named (SQLite: the file, replaced whole;
    PostgreSQL: pg_restore --clean into the database, which must exist)."""
    if database_kind(url_or_path) == "sqlite":
        target = sqlite_file(url_or_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".restoring")
        partial.unlink(missing_ok=True)
        shutil.copyfile(dump, partial)
        partial.chmod(mode)
        with partial.open("rb") as file:
            os.fsync(file.fileno())
        for suffix in _SIDE_FILES:  # an old database's WAL must not be laid over the new one
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        os.replace(partial, target)
        return str(target)
    url, env = _libpq(database_url(url_or_path))
    command = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error"]
    _run([*command, "--dbname", url, str(dump)], env)
    return shown_url(url_or_path)


def _copy_sqlite(source: Path, target: Path) -> Path:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    # mode=rw: never create an empty database where a typo points.
    with closing(sqlite3.connect(f"{source.absolute().as_uri()}?mode=rw", uri=True)) as live:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(descriptor)
        with closing(sqlite3.connect(target)) as copy:
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            copy.commit()
    target.chmod(0o600)
    return target


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The URL as pg_dump takes it (no SQLAlchemy driver, no password), and its environment."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str]) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (Debian: apt install postgresql-client)")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
