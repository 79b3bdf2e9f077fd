"""Alerts kept across a restart (server/store/alerts.py): the alert loop's state is in the
database after each look and read at the first look of the next process, on SQLite and on
PostgreSQL. An alert open before is not told again, one whose problem went while the server was
down is told cleared once, a problem still being watched keeps when it was first seen, and a
manager's acknowledgement is not undone by the loop's saves. Delivered to a real HTTP receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from server.accounts.users import Account, Role
from server.alerts.delivery import Route, WebhookSender
from server.alerts.rules import AlertRules, GateView, Snapshot
from server.alerts.task import AlertTask
from server.dashboard.reports.alerts import acknowledge_alert
from server.store.alerts import AlertRows
from server.store.database import Store
from tests.support.alert_receivers import Receiver
from tests.support.web import BACKENDS, both_backends

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SECRET = b"a webhook secret of 32 bytes ok!"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


class World:
    """What the loop sees (the gates as the fleet report would give them) and when."""

    def __init__(self) -> None:
        self.now = NOW
        self.gates: list[GateView] = []

    def look(self, _now: datetime) -> Snapshot:
        return Snapshot(list(self.gates))

    def clock(self) -> datetime:
        return self.now


def down(name: str, site: str = "hq") -> GateView:
    return GateView(name, site, online=False, offline_for_s=900.0)


def unsynced(name: str) -> GateView:
    return GateView(name, "hq", online=True, offline_for_s=None, clock_synced=False)


def server_process(store: Store, world: World, receiver: Receiver) -> AlertTask:
    """One `gatescan server`'s alert loop, as build_server makes it (kept in the store)."""
    return AlertTask(
        world.look,
        AlertRules(),  # clock unsynced: 15 minutes before it is told
        [Route(WebhookSender(receiver.url, SECRET))],
        clear_after_s=120,
        clock=world.clock,
        kept=AlertRows(store.engine),
    )


def told(receiver: Receiver) -> list[tuple[str, str]]:
    return [
        (change["event"], change["key"])
        for _, body in receiver.got
        for change in json.loads(body)["changes"]
    ]


def test_a_restart_tells_no_open_alert_again_and_clears_what_went_meanwhile(
    store: Store, receiver: Receiver
) -> None:
    world = World()
    world.gates = [down("gate-a"), down("gate-b"), unsynced("gate-c")]
    first = server_process(store, world, receiver)
    first.once()
    assert told(receiver) == [("opened", "offline:gate-a"), ("opened", "offline:gate-b")]

    # The server stops; five minutes later it starts again. gate-b came back meanwhile.
    world.now += 5 * MIN
    world.gates = [down("gate-a"), unsynced("gate-c")]
    again = server_process(store, world, receiver)
    assert again.once()[0].event == "cleared"
    world.now += 1 * MIN
    assert again.once() == []
    assert told(receiver)[2:] == [("cleared", "offline:gate-b")]  # once, and gate-a not again

    # gate-c's clock was first seen unsynced before the restart: 15 minutes from then, not
    # from the restart.
    world.now = NOW + 15 * MIN
    [opened] = again.once()
    assert (opened.event, opened.alert.problem.key) == ("opened", "clock:gate-c")

    rows = {row.key: row for row in AlertRows(store.engine).live()}
    assert set(rows) == {"offline:gate-a", "clock:gate-c"}
    assert rows["offline:gate-a"].opened_at == NOW and rows["clock:gate-c"].first_seen == NOW


def test_a_problem_gone_before_it_lasted_leaves_no_row_and_a_cleared_one_stays_cleared(
    store: Store, receiver: Receiver
) -> None:
    world = World()
    world.gates = [down("gate-a"), unsynced("gate-c")]
    loop = server_process(store, world, receiver)
    loop.once()
    world.gates = []
    world.now += 3 * MIN
    assert [c.event for c in loop.once()] == ["cleared"]
    assert AlertRows(store.engine).live() == []  # gate-c's never told: no row left
    world.now += 1 * MIN
    assert server_process(store, world, receiver).once() == []  # nothing to clear again


def test_the_loop_s_saves_keep_a_manager_s_acknowledgement(
    store: Store, receiver: Receiver
) -> None:
    world = World()
    world.gates = [down("gate-a")]
    loop = server_process(store, world, receiver)
    loop.once()
    [row] = AlertRows(store.engine).live()
    minh = Account("minh", Role.MANAGER, None, via="session", sites=frozenset({"hq"}))
    acknowledge_alert(store, minh, row.id, NOW + MIN)
    world.now += 2 * MIN
    loop.once()
    server_process(store, world, receiver).once()  # and a restart
    [kept] = AlertRows(store.engine).live()
    assert (kept.acknowledged_by, kept.acknowledged_at) == ("minh", NOW + MIN)
    assert kept.last_seen == world.now  # the loop did write its look
