"""The PostgreSQL the tests start themselves (tests/support/postgres.py, on
gatescan/testing/postgres.py): it runs, never as root, and each test gets a database of its own."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from gatescan.testing.postgres import SERVER_TIMEZONE, PostgresServer
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.schema import current_revision, head_revision


def test_a_test_gets_an_empty_database_of_its_own_on_a_server_not_run_as_root(
    postgres_url: URL, postgres_server: PostgresServer
) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT current_database()")) == postgres_url.database
            tables = conn.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
            assert tables == 0
            assert conn.scalar(text("SHOW timezone")) == SERVER_TIMEZONE
            conn.execute(text("CREATE TABLE mine (n int)"))
    finally:
        engine.dispose()
    owner = (postgres_server.socket_dir / "data").stat().st_uid
    assert owner != 0, "PostgreSQL refuses to run as root: the cluster belongs to another user"


def test_another_test_does_not_see_the_first_ones_tables(postgres_url: URL) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT to_regclass('mine')")) is None
    finally:
        engine.dispose()


def test_a_copy_of_the_schema_template_is_at_the_newest_revision_and_has_no_rows(
    postgres_server: PostgresServer, postgres_schema: str
) -> None:
    """The web suite's databases are copies of a template migrated once (tests/support/web.py):
    each starts at the newest revision, and a row written in one is not in the next."""
    for _ in range(2):
        name = postgres_server.create_database(template=postgres_schema)
        try:
            with Store(postgres_server.url(name)) as store:
                with store.engine.connect() as conn:
                    assert current_revision(conn) == head_revision()
                    assert AuditLog(store.engine).rows() == []
                AuditLog(store.engine).record("tester", "search", "someone", {})
                assert len(AuditLog(store.engine).rows()) == 1
        finally:
            postgres_server.done_with(name)
