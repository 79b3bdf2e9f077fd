"""The database's part of a backup: SQLite through its online backup API, PostgreSQL through
pg_dump and pg_restore.

    database_kind(url_or_path)                 -> "sqlite" | "postgresql"  (BackupError if neither)
    dump_database(url_or_path, folder)         -> the file written in folder
    load_database(file, url_or_path, force=)   -> where it went

SQLite: `sqlite3.Connection.backup` copies the pages under a read transaction, so a running
server (WAL: its writes go on) is copied as of one moment; the copy is turned into a single
self-contained file (journal_mode DELETE).

PostgreSQL: `pg_dump --format=custom` is a consistent snapshot too, and `pg_restore
--single-transaction` puts it back whole or not at all. The tools are found as a technician's
machine has them: on PATH (Debian's /usr/bin/pg_dump is its wrapper, which runs the newest
installed), else in Debian's /usr/lib/postgresql/<version>/bin, the newest first; the first one
at least as new as the server is used, since pg_dump refuses a newer server than itself (no
such tool: an error naming `postgresql-client`; only older ones: an error naming the version
needed). The password goes to them in a .pgpass file written 0600 in a private temporary
folder (PGPASSFILE), never on their command line nor in their environment.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from server.backup.manifest import BackupError
from server.store.database import database_url

SQLITE_NAME = "gatescan.db"
PG_DUMP_NAME = "gatescan.pgdump"
_SIDE_FILES = ("-wal", "-shm", "-journal")
DEBIAN_BINARIES = Path("/usr/lib/postgresql")  # Debian's <version>/bin/ for each installed


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
    url = database_url(url_or_path)
    pg_dump = pg_tool("pg_dump", server_major(url_or_path), "dump")
    _run([str(pg_dump), "--format=custom", "--no-owner", "--file", str(target)], url)
    target.chmod(0o600)
    return target


def server_major(url_or_path: str) -> int:
    """The PostgreSQL server's major version (15 for 15.8); BackupError if it cannot be
    reached."""
    engine = create_engine(database_url(url_or_path))
    try:
        with engine.connect() as conn:
            version = conn.dialect.server_version_info
    except Exception as exc:  # the driver's own errors: no such database, refused, password
        raise BackupError(_cannot_open(url_or_path, exc)) from None
    finally:
        engine.dispose()
    assert version is not None
    return int(version[0])


def pg_tool(
    name: str,
    server: int,
    verb: str,
    *,
    path: str | None = None,
    debian: Path = DEBIAN_BINARIES,
) -> Path:
    """`name` (pg_dump, pg_restore) of a PostgreSQL at least `server`: from PATH (`path`, by
    default the environment's), else Debian's folders, newest first."""
    candidates: list[Path] = []
    on_path = shutil.which(name, path=path)
    if on_path is not None:
        candidates.append(Path(on_path))
    versions = []
    if debian.is_dir():
        for folder in debian.iterdir():
            tool = folder / "bin" / name
            if re.fullmatch(r"\d+", folder.name) and os.access(tool, os.X_OK):
                versions.append((int(folder.name), tool))
    candidates += [tool for _, tool in sorted(versions, reverse=True)]
    if not candidates:
        raise BackupError(
            f"{name} is not installed (looked on PATH and in {debian}/*/bin): install"
            " PostgreSQL's client tools (Debian, Ubuntu: apt install postgresql-client)"
        )
    found = [(tool_major(tool), tool) for tool in candidates]
    for major, tool in found:
        if major >= server:
            return tool
    newest, tool = max(found)
    raise BackupError(
        f"{name} {newest} ({tool}) cannot {verb} a PostgreSQL {server} server: it needs"
        f" {name} {server} or newer. Install postgresql-client-{server} (Debian, Ubuntu: from"
        " apt.postgresql.org when the release has no such version)"
    )


def tool_major(tool: Path) -> int:
    """The major version a PostgreSQL tool says it is (`pg_dump (PostgreSQL) 15.8 (Debian...)`)."""
    try:
        said = subprocess.run(
            [str(tool), "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{tool} --version: {exc}") from None
    found = re.search(r"\(PostgreSQL\) (\d+)", said)
    if found is None:
        raise BackupError(f"{tool} --version said {said.strip()!r}: not a PostgreSQL tool")
    return int(found.group(1))


def check_target(url_or_path: str, force: bool) -> None:
    """BackupError if the database to restore into holds data and `force` was not given, or
    (PostgreSQL) it cannot be reached or no pg_restore here can restore into its server: all
    said before anything of the backup is written."""
    if database_kind(url_or_path) == "sqlite":
        path = sqlite_file(url_or_path)
        if path.exists() and not force:
            raise BackupError(f"{path} already exists: not replacing it (add --force to do so)")
        return
    pg_tool("pg_restore", server_major(url_or_path), "restore into")
    if force:
        return
    engine = create_engine(database_url(url_or_path))
    try:
        tables = inspect(engine).get_table_names()
    except Exception as exc:  # the driver's own errors: no such database, refused
        raise BackupError(_cannot_open(url_or_path, exc)) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"{shown_url(url_or_path)} already holds tables ({', '.join(sorted(tables)[:5])}):"
            " not restoring into it. Restore into a new, empty database, or add --force:"
            " pg_restore --clean then drops the backup's tables there and makes them again from"
            " the backup (tables the backup has not are left as they are)"
        )


def _cannot_open(url_or_path: str, exc: Exception) -> str:
    said = str(getattr(exc, "orig", None) or exc).strip()
    message = f"cannot open {shown_url(url_or_path)}: {said}"
    if "does not exist" in said and "database" in said:
        name = database_url(url_or_path).database
        message += f"\n  create it first, owned by the role that restores: createdb -O ROLE {name}"
    return message


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
    url = database_url(url_or_path)
    pg_restore = pg_tool("pg_restore", server_major(url_or_path), "restore into")
    command = [str(pg_restore), "--clean", "--if-exists", "--no-owner", "--no-privileges"]
    _run([*command, "--single-transaction", "--exit-on-error", str(dump)], url)
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


def _run(command: list[str], url: URL) -> None:
    """A libpq tool on the database `url` names: the URL (no driver, no password) in --dbname,
    the URL's password in a .pgpass of a private temporary folder (else libpq's own: PGPASSWORD,
    ~/.pgpass)."""
    # URL.create, not url.set(password=None): set() takes None as "keep it", and the password
    # went on pg_dump's command line so (found by tests/server/backup/test_postgres_backup.py).
    plain = URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    ).render_as_string(hide_password=False)
    env = dict(os.environ)  # PGPASSWORD or ~/.pgpass when the URL names no password
    with tempfile.TemporaryDirectory(prefix="gatescan-pg-") as private:  # made 0700
        if url.password is not None:
            env.pop("PGPASSWORD", None)
            passfile = Path(private) / "pgpass"
            escaped = re.sub(r"([\\:])", r"\\\1", str(url.password))
            descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(f"*:*:*:*:{escaped}\n")
            env["PGPASSFILE"] = str(passfile)
        done = subprocess.run(
            [*command, "--dbname", plain], env=env, capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        name = Path(command[0]).name
        said = done.stderr.strip()
        if "version mismatch" in said or "unsupported version" in said:
            said += (
                f"\n  {command[0]} is older than the server or the dump: install the"
                " postgresql-client of the newer version"
            )
        raise BackupError(f"{name} failed ({done.returncode}): {said}")
