"""The database's schema version, kept by Alembic: `migrate` brings any database to the newest.

Three kinds of database are opened:
- an empty one: the revisions run from the first (server/store/migrations/versions/);
- one made before migrations (create_all, and upgrade_schema adding what each version added):
  that upgrade brings it to the first revision's shape, its rows kept, and it is stamped with
  that revision, then the later ones run;
- one with a version: the revisions after it run.

All of it in one transaction, which a second process opening the same database at the same
moment (the collector and the dashboard start together) waits for before it reads anything, then
finds the work done: on PostgreSQL an advisory lock, on SQLite its write lock (BEGIN IMMEDIATE).
tests/server/store/test_migration_races.py races two processes on each kind of database.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, inspect, text

from server.store.tables import metadata, upgrade_schema

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

log = logging.getLogger("gatescan.store")
# Alembic says at INFO what it loads (as it is imported: "setup plugin ...") and runs ("Context
# impl SQLiteImpl") at every opening: a command's stderr is for what matters, and the store logs
# its own upgrades. Raised only where nobody set a level for it, before alembic is imported
# (in the functions below: the commands set up logging first, then import what they run).
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema when migrations began: what upgrade_schema makes
# Its tables: all a database made before migrations can lack is made from these alone (a table
# added later is its revision's to make, which runs after the stamp).
BASELINE_TABLES = (
    "account_sites", "api_tokens", "audit_log", "dead_letters", "devices", "entries",
    "erased_subjects", "gates",
    "passes", "site_keys", "site_lists", "site_policy", "site_policy_buckets", "users",
    "web_sessions",
)  # fmt: skip
_LOCK_KEY = 0x6761746573636E  # "gatescn": PostgreSQL's advisory lock for the migration
MIGRATION_WAIT_S = 600.0  # how long SQLite's opening waits for another process's migration

__all__ = [
    "BASELINE",
    "BASELINE_TABLES",
    "MIGRATIONS",
    "current_revision",
    "head_revision",
    "migrate",
]


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "no revisions in server/store/migrations/versions/"
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's revision, or None (empty, or made before migrations)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> list[str]:
    """Bring the database to the newest revision. Returns "table.column" for each column the
    pre-migration upgrade added (an older database's first opening), as upgrade_schema does."""
    from alembic.runtime.migration import MigrationContext

    added: list[str] = []
    with _migration_lock(engine) as conn:
        script = _script()
        context = MigrationContext.configure(conn)
        ours = set(inspect(conn).get_table_names()) & set(metadata.tables)
        if context.get_current_revision() is None and ours:
            # Made before migrations: the hand-written upgrade of that time, then the stamp.
            baseline = [metadata.tables[name] for name in BASELINE_TABLES]
            metadata.create_all(conn, tables=baseline)  # what a version before added since
            added = upgrade_schema(conn)
            context.stamp(script, BASELINE)
            log.info("database upgrade: stamped as revision %s", BASELINE)
        _upgrade(conn, script)
    return added


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """One transaction that a second process migrating the same database waits for before it
    reads anything: it then finds the work done.

    PostgreSQL: an advisory lock, taken first in the transaction. SQLite: its write lock, taken
    by BEGIN IMMEDIATE. (Python's sqlite3 begins no transaction before DDL and none before a
    SELECT: left to it, two processes both read "no version", and the slower one's CREATE TABLE
    fails with "table ... already exists". So the driver is put in autocommit for this
    connection, and the transaction is ours.) The wait is MIGRATION_WAIT_S, not the store's
    busy timeout: a database made before migrations may take a while to upgrade (its indexes).
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            yield conn
        return
    with engine.connect() as plain:
        conn = plain.execution_options(isolation_level="AUTOCOMMIT")
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        waited = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(MIGRATION_WAIT_S * 1000)}")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if driver.in_transaction:
                    conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(waited or 0)}")


def _upgrade(conn: Connection, script: ScriptDirectory) -> None:
    from alembic.runtime.environment import EnvironmentContext

    def steps(revision: Any, _context: MigrationContext) -> Any:
        return script._upgrade_revs("head", revision)  # what `alembic upgrade head` runs

    with EnvironmentContext(_config(), script, fn=steps, destination_rev="head") as environment:
        environment.configure(connection=conn, target_metadata=metadata)
        with environment.begin_transaction():  # inside ours: no commit of its own
            environment.run_migrations()
