"""`gatescan person export|erase ID` as an admin runs them (real SQLite): the export as UTF-8
JSON with names exact, the erasure audited by the ID's SHA-256 only and saying what it could not
reach, an unknown ID refused with exit 3, no erasure without --yes. The command's main runs in
this process (tests/support/cli.py: run_gatescan_here), but in the first test, a real process."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gatescan.testing.samples import sample_event
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.site_policy import SiteLists
from tests.support.cli import run_gatescan, run_gatescan_here

CCCD = "001203004567"
NAME = "Nguyễn Thị Ánh Tuyết"
NOW = datetime.now(UTC)


def gatescan(db: Path, *args: str, process: bool = False) -> tuple[int, str, str]:
    """The command's main in this process; `process`: in its own, as an admin runs it."""
    done = (run_gatescan if process else run_gatescan_here)([*args, "--db", str(db)])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "gatescan.db"
    with Store(db) as store:
        events = [
            sample_event(event_id=f"evt-0000000{n}", subject_id=CCCD, subject_name=NAME,
                         ts=NOW - timedelta(minutes=n))
            for n in (1, 2)
        ]  # fmt: skip
        store.add_events(events, NOW)
        SiteLists(store.engine).add("hq", "block", [f"cccd:{CCCD}"], NOW)
    return db


def test_export_writes_utf8_json_and_is_audited(tmp_path: Path) -> None:
    db = seeded(tmp_path)
    out = tmp_path / "person.json"

    code, _, err = gatescan(db, "person", "export", CCCD, "-o", str(out), process=True)

    assert code == 0, err
    assert "2 entries" in err and "1 lists" in err
    assert NAME.encode() in out.read_bytes()
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [e["subject_name"] for e in document["entries"]] == [NAME, NAME]
    assert document["lists"][0]["subject"] == f"cccd:{CCCD}"
    assert out.stat().st_mode & 0o077 == 0
    with Store(db) as store:
        rows = AuditLog(store.engine).rows(action="person")
    assert [(r.subject, r.details["change"]) for r in rows] == [(CCCD, "person export")]


def test_erase_audits_only_the_digest_and_says_what_it_could_not_reach(tmp_path: Path) -> None:
    db = seeded(tmp_path)

    code, _, err = gatescan(db, "person", "erase", CCCD)  # no terminal, no --yes
    assert code == 2 and "--yes" in err

    code, out, err = gatescan(db, "person", "erase", CCCD, "--yes")

    assert code == 0, err
    assert "erased: 2 entries, 0 dead letters, 1 list entries (hq/block)" in out
    assert "gates' own journals" in out and "retention days" in out and "backups" in out
    with Store(db) as store:
        assert list(store.entries()) == []
        rows = AuditLog(store.engine).rows(action="person")
    digest = hashlib.sha256(CCCD.encode()).hexdigest()
    assert [(r.subject, r.details["change"]) for r in rows] == [
        (f"sha256:{digest}", "person erase")
    ]
    assert CCCD not in json.dumps([r.model_dump(mode="json") for r in rows])

    code, _, err = gatescan(db, "person", "erase", CCCD, "--yes")
    assert code == 3 and "erased before" in err


def test_erasing_an_unknown_id_says_so(tmp_path: Path) -> None:
    db = seeded(tmp_path)
    code, _, err = gatescan(db, "person", "erase", "079203001234", "--yes")
    assert code == 3 and "nothing kept names this ID" in err
    code, _, err = gatescan(db, "person", "erase", "12345", "--yes")
    assert code == 2 and "neither" in err
    with Store(db) as store:
        assert len(list(store.entries())) == 2
        assert AuditLog(store.engine).rows(action="person") == []
