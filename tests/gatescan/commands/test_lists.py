"""`gatescan list add|remove|show` as an admin runs them (real SQLite): IDs of
both kinds, a bad ID refused with nothing changed, the entries shown, each change audited and
the site's policy version grown. The command's main runs in this process (tests/support/cli.py:
run_gatescan_here), but in the first test, a real process."""

from __future__ import annotations

from pathlib import Path

from server.store.audit import AuditLog
from server.store.database import Store
from server.store.site_policy import policy_versions
from tests.support.cli import run_gatescan, run_gatescan_here

CCCD = "001099012345"
PASS_ID = "3f2a9c0e1b7d4a55"


def gatescan(db: Path, *args: str, process: bool = False) -> tuple[int, str, str]:
    """The command's main in this process; `process`: in its own, as an admin runs it."""
    done = (run_gatescan if process else run_gatescan_here)([*args, "--db", str(db)])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def versions(db: Path) -> dict[str, int]:
    with Store(str(db)) as store:
        return policy_versions(store.engine)


def test_list_add_show_remove(tmp_path: Path) -> None:
    db = tmp_path / "gatescan.db"
    code, out, err = gatescan(
        db, "list", "add", "allow", "--site", "hq", CCCD, PASS_ID.upper(), process=True
    )
    assert code == 0, err
    assert "2 added to the allow list" in out
    assert versions(db) == {"hq": 1}
    code, out, _ = gatescan(db, "list", "show", "allow", "--site", "hq")
    assert code == 0
    rows = [line.split()[:2] for line in out.splitlines()[1:]]
    assert rows == [["cccd", CCCD], ["pass", PASS_ID]]
    assert gatescan(db, "list", "show", "block", "--site", "hq")[1].splitlines()[1:] == []

    code, out, _ = gatescan(db, "list", "remove", "allow", "--site", "hq", CCCD)
    assert code == 0 and "1 removed" in out
    assert versions(db) == {"hq": 2}
    code, _, err = gatescan(db, "list", "remove", "allow", "--site", "hq", CCCD)
    assert code == 3 and "none of them" in err
    with Store(str(db)) as store:
        changes = [(r.action, r.details["change"]) for r in AuditLog(store.engine).rows()]
    assert changes.count(("list", "list add")) == 1
    assert changes.count(("list", "list remove")) == 1


def test_a_bad_id_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "gatescan.db"
    assert gatescan(db, "list", "add", "block", "--site", "hq", CCCD)[0] == 0
    code, _, err = gatescan(db, "list", "add", "block", "--site", "hq", "079203001234", "12345",
                            "https://menu.example/")  # fmt: skip
    assert code == 2
    assert "'12345'" in err and "nothing was changed" in err
    code, out, _ = gatescan(db, "list", "show", "block", "--site", "hq")
    assert [line.split()[1] for line in out.splitlines()[1:]] == [CCCD]
    assert versions(db) == {"hq": 1}
