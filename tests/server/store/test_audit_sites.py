"""The audit log by site, on SQLite and PostgreSQL: a row names the one site it concerns or none
(""); `rows(sites=...)` gives those sites' rows, `rows(some_site=True)` any site's, and neither
ever a row of no site (logins, account changes, looks across sites: the admin's)."""

from __future__ import annotations

from server.store.audit import AuditLog, AuditRow
from server.store.database import Store


def test_rows_by_site_never_hold_a_row_of_no_site(store: Store) -> None:
    audit = AuditLog(store.engine)
    audit.record("lan", "unmask", "", {"shown": 1}, site_id="hq")
    audit.record("an", "unmask", "", {"shown": 2}, site_id="annex")
    audit.record("admin", "login")
    audit.record("cli:root", "account", "lan", {"change": "user sites"})
    audit.record("lan", "door", "gate-1", site_id="hq")

    def shown(rows: list[AuditRow]) -> list[tuple[str, str]]:
        return [(row.action, row.site_id) for row in rows]

    assert shown(audit.rows(sites=frozenset({"hq"}))) == [("door", "hq"), ("unmask", "hq")]
    assert shown(audit.rows(sites=frozenset({"hq", "annex"}), action="unmask")) == [
        ("unmask", "annex"),
        ("unmask", "hq"),
    ]
    assert shown(audit.rows(some_site=True)) == [
        ("door", "hq"),
        ("unmask", "annex"),
        ("unmask", "hq"),
    ]
    assert shown(audit.rows(sites=frozenset())) == []
    assert len(audit.rows()) == 5
