"""`gatescan backup` and `gatescan restore` of a store on PostgreSQL (the tests' own server,
tests/support/postgres.py), as a site runs it: a role that logs in with a password and owns its
database, named with that password in server.toml; the backup's pg_dump and the restore's
pg_restore found on PATH, run through a shim there that writes down each command line and
environment. Restored into a new, empty database of another role (a new machine): every row the
same, the schema at the newest revision, and the store opens and serves (a login, the audit log
by site, `gatescan entries export`); a database that holds tables is refused without --force,
and replaced whole with it.

Beside it, how pg_dump and pg_restore are found: PATH first, then Debian's
/usr/lib/postgresql/<version>/bin; none, or only ones older than the server, said plainly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import URL

from gatescan.testing.postgres import PostgresServer, server_binaries
from gatescan.testing.samples import sample_event
from server.accounts.users import Accounts, Role
from server.backup.databases import DEBIAN_BINARIES, pg_tool, server_major, tool_major
from server.backup.manifest import BackupError
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.gates import GateRegistry, NewGate
from server.store.schema import current_revision, head_revision
from server.store.site_keys import SiteKeys
from server.store.tables import metadata
from tests.support.cli import run_gatescan
from tests.support.tls_site import new_site, site_folder
from tests.support.web import FAST_HASHER, PASSWORD

RECEIVED = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
# What .pgpass and URLs must escape: a colon, a backslash, an at sign, a slash.
DB_PASSWORD = r"pa:ss\word@hq/1"


def _shims(folder: Path) -> Path:
    """pg_dump and pg_restore on PATH that write down their arguments and environment, then run
    the real ones (the newest PostgreSQL's, as the tests' server is)."""
    folder.mkdir()
    for name in ("pg_dump", "pg_restore"):
        shim = folder / name
        shim.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$@" >> "{folder}/{name}.args"\n'
            f'env >> "{folder}/{name}.env"\n'
            f'if [ -n "$PGPASSFILE" ]; then stat -c "%a %s" "$PGPASSFILE" >> "{folder}/{name}.env";'
            " fi\n"
            f'exec "{server_binaries() / name}" "$@"\n',
            encoding="utf-8",
        )
        shim.chmod(0o755)
    return folder


def _every_row(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows in its primary key's order, and alembic_version."""
    rows = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(row) for row in conn.execute(query)]
        versions = conn.execute(text("SELECT version_num FROM alembic_version"))
        rows["alembic_version"] = [tuple(row) for row in versions]
    return rows


def _fill(url: URL) -> None:
    """Entries, an account, audit rows, a site key, a gate and a dead letter."""
    with Store(url) as store:
        store.add_events([sample_event(seq=n) for n in (1, 2, 3)], RECEIVED)
        Accounts(store.engine, hasher=FAST_HASHER).add_user(
            "ana", Role.MANAGER, PASSWORD, sites=["hq"]
        )
        audit = AuditLog(store.engine, clock=lambda: RECEIVED)
        audit.record("ana", "unmask", "entry 1", {"why": "a lost card"}, site_id="hq")
        audit.record("admin", "account", "ana", {"role": "manager"})
        SiteKeys(store.engine).rotate("hq", RECEIVED)
        GateRegistry(store.engine).add(NewGate("gate-01", "hq"), "a" * 64, RECEIVED, RECEIVED)
        store.dead_letter("gatescan/v1/gate-01/events", b"{", "schema", "not JSON", RECEIVED)


@pytest.fixture
def source(postgres_server: PostgresServer) -> Iterator[URL]:
    """A database owned by a role that logs in with DB_PASSWORD, as a site's is."""
    role = postgres_server.create_role(DB_PASSWORD)
    name = postgres_server.create_database(owner=role)
    try:
        yield postgres_server.url(name, role, DB_PASSWORD)
    finally:
        postgres_server.done_with(name)


def test_a_postgresql_store_backed_up_and_restored_into_a_new_database(
    postgres_server: PostgresServer, source: URL, tmp_path: Path
) -> None:
    _fill(source)
    engine = create_engine(source)
    try:
        before = _every_row(engine)
    finally:
        engine.dispose()
    assert all(before[name] for name in ("entries", "users", "audit_log", "site_keys", "gates"))
    shims = _shims(tmp_path / "bin")
    env = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    # The new machine: its own role and password, and an empty database it owns.
    other_password = "an0ther:one"
    restorer = postgres_server.create_role(other_password)
    target_name = postgres_server.create_database(owner=restorer)
    target = postgres_server.url(target_name, restorer, other_password)
    target_text = target.render_as_string(hide_password=False)

    with site_folder() as folder:
        site = new_site(folder)
        config = site.server_config.read_text(encoding="utf-8")
        source_text = source.render_as_string(hide_password=False)
        config = re.sub(r"(?m)^db = .*$", f"db = {json.dumps(source_text)}", config)
        site.server_config.write_text(config, encoding="utf-8")
        backup = folder.parent / "backup"

        taken = run_gatescan(["backup", str(backup), "--config", str(site.server_config)], env=env)
        assert taken.returncode == 0, taken.stderr

        manifest_text = (backup / "manifest.json").read_text(encoding="utf-8")
        manifest = json.loads(manifest_text)
        assert manifest["database_kind"] == "postgresql"
        assert DB_PASSWORD not in manifest_text and "pa:ss" not in manifest_text
        [dump] = [entry for entry in manifest["files"] if entry["path"].startswith("database/")]
        assert dump["path"] == "database/gatescan.pgdump" and dump["mode"] == "0600"
        assert (backup / dump["path"]).read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

        # A database that holds tables is refused, before anything is written.
        holding = postgres_server.url(postgres_server.create_database(), "gatescan")
        busy_engine = create_engine(holding)
        try:
            with busy_engine.begin() as conn:
                conn.execute(text("CREATE TABLE theirs (n int)"))
        finally:
            busy_engine.dispose()
        elsewhere = folder.parent / "elsewhere"
        refused = run_gatescan(
            ["restore", str(backup), "--to", str(elsewhere), "--db", str(holding)], env=env
        )
        assert refused.returncode == 2, refused.stderr
        assert "already holds tables (theirs)" in refused.stderr
        assert "--force" in refused.stderr and "new, empty database" in refused.stderr
        assert not elsewhere.exists()
        missing = target.set(database="never_made").render_as_string(hide_password=False)
        nowhere = run_gatescan(
            ["restore", str(backup), "--to", str(elsewhere), "--db", missing], env=env
        )
        assert nowhere.returncode == 2, nowhere.stderr
        assert "never_made" in nowhere.stderr and "createdb -O ROLE never_made" in nowhere.stderr
        assert other_password not in nowhere.stderr and not elsewhere.exists()

        restored_dir = folder.parent / "restored"
        put_back = run_gatescan(
            ["restore", str(backup), "--to", str(restored_dir), "--db", target_text], env=env
        )
        assert put_back.returncode == 0, put_back.stderr
        assert other_password not in put_back.stdout

        # The password never on a command line nor in the environment: in a .pgpass, 0600.
        for tool in ("pg_dump", "pg_restore"):
            args = (shims / f"{tool}.args").read_text(encoding="utf-8")
            environment = (shims / f"{tool}.env").read_text(encoding="utf-8")
            assert "--dbname" in args
            for secret in (DB_PASSWORD, other_password, "pa:ss", "pa%3A", "an0ther"):
                assert secret not in args and secret not in environment
            assert "PGPASSWORD" not in environment
            assert re.search(r"^600 \d+$", environment, re.M), environment

        with Store(target) as restored:
            with restored.engine.connect() as conn:
                assert current_revision(conn) == head_revision()
            assert _every_row(restored.engine) == before
            assert restored.count_entries() == 3
            accounts = Accounts(restored.engine, hasher=FAST_HASHER)
            assert accounts.authenticate("ana", PASSWORD) is not None
            audit = AuditLog(restored.engine, clock=lambda: RECEIVED)
            [hq] = audit.rows(sites=frozenset({"hq"}))
            assert (hq.actor, hq.details) == ("ana", {"why": "a lost card"})
            audit.record("admin", "login")  # its id sequence came back too: no clash
            assert len(audit.rows()) == 3
        exported = run_gatescan(["entries", "export", "--db", target_text], env=env)
        assert exported.returncode == 0, exported.stderr
        assert len(exported.stdout.splitlines()) == 3

        # Again with --force: the backup's tables replaced, nothing doubled.
        again = run_gatescan(
            ["restore", str(backup), "--to", str(restored_dir), "--db", target_text, "--force"],
            env=env,
        )
        assert again.returncode == 0, again.stderr
        engine = create_engine(target)
        try:
            assert _every_row(engine) == before
        finally:
            engine.dispose()
    postgres_server.done_with(target_name)


def test_pg_dump_is_taken_from_path_else_from_debians_folders(
    postgres_url: URL, tmp_path: Path
) -> None:
    server = server_major(postgres_url.render_as_string(hide_password=False))
    shims = _shims(tmp_path / "bin")
    assert pg_tool("pg_dump", server, "dump", path=str(shims)) == shims / "pg_dump"
    # Nothing on PATH: the newest of Debian's, which can dump this server.
    found = pg_tool("pg_dump", server, "dump", path="")
    assert found.parent.parent.parent == DEBIAN_BINARIES and tool_major(found) >= server


def test_no_pg_dump_at_all_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match=r"apt install postgresql-client\)"):
        pg_tool("pg_dump", 15, "dump", path="", debian=tmp_path / "none")


def test_a_pg_dump_older_than_the_server_is_not_used_and_the_version_needed_is_said(
    tmp_path: Path,
) -> None:
    # Debian's folder as a machine with only PostgreSQL 13's client has it; its pg_dump says
    # its version as the real one does (the real one would refuse a newer server at its start).
    old = tmp_path / "postgresql" / "13" / "bin" / "pg_dump"
    old.parent.mkdir(parents=True)
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.16 (Debian 13.16-0+deb11u1)'\n")
    old.chmod(0o755)
    assert tool_major(old) == 13
    assert pg_tool("pg_dump", 13, "dump", path="", debian=old.parents[2]) == old
    with pytest.raises(BackupError) as refused:
        pg_tool("pg_dump", 16, "dump", path="", debian=old.parents[2])
    said = str(refused.value)
    assert "pg_dump 13" in said and "PostgreSQL 16 server" in said
    assert "postgresql-client-16" in said
