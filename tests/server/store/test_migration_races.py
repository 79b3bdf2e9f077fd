"""Two processes opening the same database at the same moment (the collector and the dashboard
start together): both bring it to the newest revision, or find it done, and both go on; one
set of tables, one row in alembic_version, no "already exists" or "duplicate column".

Real processes: two `python -c` children, each loaded with gatescan and Alembic before the race,
each blocked on its stdin; the test writes the database's URL to both pipes back to back, and
each opens `Store(url)` at once. Each case runs ROUNDS (2) times, a fresh database each round, on
SQLite (a file) and on the tests' PostgreSQL: an empty database, one made before migrations, and
one at revision 0001 that needs 0002 (audit_log.site_id). Each child reports when its opening
began and ended (CLOCK_MONOTONIC, the same clock in both): the test checks the openings did
overlap, so a race was really run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, insert, inspect, select, text

from gatescan.testing.postgres import PostgresServer
from gatescan.testing.samples import sample_event
from server.store.database import database_url
from server.store.schema import BASELINE, MIGRATIONS, current_revision, head_revision
from server.store.tables import entries_table, metadata
from tests.support.paths import PROJECT_ROOT

ROUNDS = 2
TIMEOUT_S = 60.0

# The child: everything imported first, then one opening per line of stdin, one JSON line out.
_CHILD = """
import json, sys, time, traceback
from server.store.database import Store
import alembic.runtime.environment, alembic.runtime.migration, alembic.script
print("ready", flush=True)
for line in sys.stdin:
    began = time.monotonic()
    try:
        Store(line.strip()).close()
        error = None
    except Exception:
        error = traceback.format_exc()
    print(json.dumps({"began": began, "ended": time.monotonic(), "error": error}), flush=True)
"""


@dataclass(frozen=True)
class Opening:
    began: float
    ended: float
    error: str | None


class Racers:
    """Two children, each opening the database named on its stdin when told."""

    def __init__(self, processes: list[subprocess.Popen[str]]) -> None:
        self.processes = processes

    def race(self, url: str) -> list[Opening]:
        for process in self.processes:  # back to back: both are blocked reading
            assert process.stdin is not None
            process.stdin.write(url + "\n")
            process.stdin.flush()
        return [Opening(**self._answer(process)) for process in self.processes]

    def _answer(self, process: subprocess.Popen[str]) -> Any:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"a child ended: {process.wait()} {process.communicate()}")
        return json.loads(line)


@contextmanager
def racers() -> Iterator[Racers]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n", process.communicate()
        yield Racers(processes)
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            assert process.wait(timeout=TIMEOUT_S) == 0, process.communicate()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _empty(_url: str) -> None:
    pass


def _before_migrations(url: str) -> None:
    """As the version before migrations made it (tests/server/store/test_schema.py): create_all
    with no version table, without what came later (the site policy's capacity, the gate
    registry, audit_log.site_id), and an entry."""
    event = sample_event()
    entry = {
        name: str(value) if isinstance(value, Enum) else value
        for name, value in event.model_dump().items()
    }
    engine = create_engine(database_url(url))
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(text("ALTER TABLE site_policy DROP COLUMN capacity"))
            conn.execute(text("DROP TABLE gates"))
            conn.execute(text("DROP INDEX ix_audit_log_site_id_at"))
            conn.execute(text("ALTER TABLE audit_log DROP COLUMN site_id"))
            conn.execute(insert(entries_table).values(**entry, received_at=event.ts))
    finally:
        engine.dispose()


def _at_first_revision(url: str) -> None:
    """Revision 0001 and nothing after: what the release before 0002 left."""
    engine = create_engine(database_url(url))
    try:
        with engine.begin() as conn:
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            script = ScriptDirectory.from_config(config)

            def steps(revision: Any, _context: MigrationContext) -> Any:
                return script._upgrade_revs(BASELINE, revision)

            with EnvironmentContext(config, script, fn=steps, destination_rev=BASELINE) as env:
                env.configure(connection=conn, target_metadata=metadata)
                with env.begin_transaction():
                    env.run_migrations()
            assert current_revision(conn) == BASELINE
            columns = {c["name"] for c in inspect(conn).get_columns("audit_log")}
            assert "site_id" not in columns
    finally:
        engine.dispose()


CASES: dict[str, Callable[[str], None]] = {
    "empty": _empty,
    "made before migrations": _before_migrations,
    "at revision 0001": _at_first_revision,
}


def _check_at_head(url: str, case: str) -> None:
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert [tuple(row) for row in versions] == [(head_revision(),)]
            assert list(compare_metadata(MigrationContext.configure(conn), metadata)) == []
            kept = conn.scalar(select(func.count()).select_from(entries_table))
            assert kept == (1 if case == "made before migrations" else 0)
    finally:
        engine.dispose()


def _rounds(
    backend: str, prepare: Callable[[str], None], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """ROUNDS fresh databases, each a copy of one made by `prepare`."""
    if backend == "sqlite":
        template = tmp_path / "template.db"
        prepare(str(template))
        for number in range(ROUNDS):
            copy = tmp_path / f"round-{number}.db"
            if template.exists():
                shutil.copyfile(template, copy)
            yield str(copy)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template_name = server.create_database()
    prepare(server.url(template_name).render_as_string(hide_password=False))
    for _ in range(ROUNDS):
        name = server.create_database(template=template_name)
        try:
            yield server.url(name).render_as_string(hide_password=False)
        finally:
            server.done_with(name)
    server.done_with(template_name)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_opening_at_once_both_end_at_head(
    backend: str, case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    overlapped = 0
    with racers() as two:
        for url in _rounds(backend, CASES[case], tmp_path, request):
            first, second = two.race(url)
            assert (first.error, second.error) == (None, None), (first.error or "") + (
                second.error or ""
            )
            overlapped += max(first.began, second.began) < min(first.ended, second.ended)
            _check_at_head(url, case)
    assert overlapped > 0, "the two openings never overlapped: no race was run"
