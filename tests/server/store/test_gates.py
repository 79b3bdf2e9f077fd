"""The gate registry (server/store/gates.py) on a real SQLite store: a token spent once, a new
card voiding the old one, states, the counts `site list` prints, and an older database gaining
the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from server.collector.sites import GateSites
from server.store.database import Store
from server.store.gates import GateError, GateRegistry, NewGate, Reported

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=3)
TOKEN, OTHER = "a" * 64, "b" * 64


@pytest.fixture
def registry(store: Store) -> GateRegistry:
    return GateRegistry(store.engine)


def test_a_gate_is_registered_once_and_its_token_spent_once(registry: GateRegistry) -> None:
    registry.add(NewGate("gate-1", "hq", "lobby", "in"), TOKEN, LATER, NOW)
    with pytest.raises(GateError, match="registered already") as refused:
        registry.add(NewGate("gate-1", "branch"), OTHER, LATER, NOW)
    assert refused.value.reason == "exists"

    assert registry.enrol("gate-1", TOKEN, Reported("Pi 5", "1.4.0"), NOW)
    assert not registry.enrol("gate-1", TOKEN, Reported(), NOW)  # spent
    gate = registry.by_token(TOKEN)
    assert gate is not None and gate.state == "enrolled" and not gate.token_open
    assert (gate.hardware, gate.agent_version, gate.enrolments) == ("Pi 5", "1.4.0", 1)


def test_a_new_card_voids_the_old_token_and_makes_the_gate_pending(
    registry: GateRegistry,
) -> None:
    registry.add(NewGate("gate-1", "hq"), TOKEN, LATER, NOW)
    registry.enrol("gate-1", TOKEN, Reported(), NOW)

    replaced = registry.new_token("gate-1", OTHER, LATER, NOW + timedelta(hours=1))

    assert replaced.state == "pending" and replaced.token_open
    assert registry.by_token(TOKEN) is None
    assert registry.enrol("gate-1", OTHER, Reported(), NOW)
    assert registry.get("gate-1").enrolments == 2  # type: ignore[union-attr]


def test_a_pending_gate_is_reissued_and_an_enrolled_one_never(registry: GateRegistry) -> None:
    registry.add(NewGate("gate-1", "hq"), TOKEN, LATER, NOW)

    reissued = registry.reissue_pending("gate-1", OTHER, LATER, NOW + timedelta(hours=1))

    assert reissued is not None and reissued.token_open and reissued.token_sha256 == OTHER
    assert registry.by_token(TOKEN) is None
    assert registry.enrol("gate-1", OTHER, Reported(), NOW)
    # Enrolled (by an exchange that came first): a reissue leaves it as it is.
    assert registry.reissue_pending("gate-1", TOKEN, LATER, NOW) is None
    gate = registry.get("gate-1")
    assert gate is not None and (gate.state, gate.token_sha256) == ("enrolled", OTHER)
    assert registry.reissue_pending("gate-9", TOKEN, LATER, NOW) is None


def test_revoked_and_retired_gates_are_counted_by_site(registry: GateRegistry) -> None:
    for number, site in enumerate(["hq", "hq", "hq", "branch"]):
        registry.add(NewGate(f"gate-{number}", site), f"{number:064x}", LATER, NOW)
    registry.set_state("gate-1", "revoked", NOW)
    registry.set_state("gate-2", "retired", NOW)
    with pytest.raises(GateError, match="no gate 'gate-9'"):
        registry.set_state("gate-9", "revoked", NOW)

    assert registry.site_counts() == {
        "hq": {"pending": 1, "revoked": 1, "retired": 1},
        "branch": {"pending": 1},
    }
    assert not registry.enrol("gate-1", f"{1:064x}", Reported(), NOW)  # revoked: no enrolment


def test_the_collector_s_map_of_sites_follows_the_registry(registry: GateRegistry) -> None:
    sites = GateSites(registry)
    assert sites.current == {}
    before = sites.current
    sites.refresh()
    assert sites.current is before  # unchanged registry: not even reread

    registry.add(NewGate("gate-1", "hq"), TOKEN, LATER, NOW)
    sites.refresh()

    assert sites.current == {"gate-1": "hq"}


def test_an_older_database_gains_the_gate_registry(store_url: Path | URL) -> None:
    with Store(store_url) as older, older.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # made before migrations
        conn.execute(text("DROP TABLE gates"))
    with Store(store_url) as store:
        registry = GateRegistry(store.engine)
        registry.add(NewGate("gate-1", "hq"), TOKEN, LATER, NOW)
        assert [gate.device_id for gate in registry.all()] == ["gate-1"]
