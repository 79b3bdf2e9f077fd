"""The schema's versions (server/store/schema.py, Alembic): an empty database and one made
before migrations both end at the newest revision with exactly the tables of
server/store/tables.py, rows kept; on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import URL

from gatescan.testing.samples import sample_event
from server.store.database import Store, database_url
from server.store.gates import GateRegistry, NewGate
from server.store.schema import BASELINE_TABLES, MIGRATIONS, current_revision, head_revision
from server.store.tables import entries_table, metadata, site_policy_table

RECEIVED = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_an_empty_database_is_made_by_the_revisions_exactly_as_the_tables_say(
    store_url: Path | URL,
) -> None:
    with Store(store_url) as store:
        with store.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert _differences(store.engine) == []


def test_opening_again_changes_nothing(store_url: Path | URL) -> None:
    with Store(store_url) as first:
        first.add_events([sample_event()], RECEIVED)
    with Store(store_url) as again:
        assert again.count_entries() == 1
        with again.engine.connect() as conn:
            assert current_revision(conn) == head_revision()


def test_a_database_made_before_migrations_is_upgraded_and_keeps_its_rows(
    store_url: Path | URL,
) -> None:
    # As the version before migrations made it: create_all of its tables and no version table,
    # without what came last (the site policy's capacity, the gate registry), with rows.
    event = sample_event()
    entry = {
        name: str(value) if isinstance(value, Enum) else value
        for name, value in event.model_dump().items()
    }
    engine = create_engine(database_url(store_url))
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(text("ALTER TABLE site_policy DROP COLUMN capacity"))
            conn.execute(text("DROP TABLE gates"))
            conn.execute(insert(entries_table).values(**entry, received_at=RECEIVED))
            conn.execute(
                insert(site_policy_table).values(
                    site_id="hq", version=7, list_key=b"k" * 32, changed_at=RECEIVED
                )
            )
    finally:
        engine.dispose()

    with Store(store_url) as upgraded:
        [stored] = upgraded.entries()
        assert stored.event == event and stored.received_at == RECEIVED
        with upgraded.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            policy = conn.execute(select(site_policy_table)).mappings().one()
            assert (policy["version"], policy["capacity"]) == (7, None)
        assert _differences(upgraded.engine) == []
        GateRegistry(upgraded.engine).add(NewGate("gate-1", "hq"), "a" * 64, RECEIVED, RECEIVED)


def test_the_first_revision_makes_the_tables_it_names() -> None:
    baseline = (MIGRATIONS / "versions" / "r0001_baseline.py").read_text(encoding="utf-8")
    made = re.findall(r'op\.create_table\(\s*"(\w+)"', baseline)
    assert sorted(made) == sorted(BASELINE_TABLES)
