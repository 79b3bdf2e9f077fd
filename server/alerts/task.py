"""The server's alert loop: every `every` seconds, one look at the fleet and the server, the
problems found, the alerts opened and cleared, one message per route (issue 16).

A thread of `gatescan server`, beside the collector and the dashboard. Its look reads the same
fleet report the dashboard shows (a gate is offline on both at once), the dead letters and
failed logins of the last 10 minutes, and when the installation's CA ends. The tracker's state
is saved after each look (server/store/alerts.py, after the delivery: a crash between the two
tells again rather than never) and restored at the first: a restart sends no open alert again,
and what cleared while the server was down is told once. Nothing here stops the server: an
error is logged, and the next look tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography import x509
from sqlalchemy import func, select

from protocol.verdicts import CredentialType
from server.alerts.delivery import AlertDispatcher, Route
from server.alerts.rules import (
    AlertRules,
    CheckinsToday,
    Expiring,
    GateView,
    Problem,
    Snapshot,
    find_problems,
)
from server.alerts.tracker import CLEAR_AFTER_S, Alert, AlertTracker, Change
from server.clock import local_day_start
from server.dashboard.reports.fleet import fleet_status
from server.store.alerts import AlertRow, AlertRows, TrackedAlert
from server.store.database import Store
from server.store.tables import audit_log_table, dead_letters_table, entries_table

log = logging.getLogger("gatescan.alerts")

WINDOW = timedelta(minutes=10)


def look(
    store: Store,
    now: datetime,
    offline_after_s: float,
    tz: ZoneInfo,
    ca_file: Path | None = None,
) -> Snapshot:
    gates = [
        GateView(
            device_id=gate.device_id,
            site_id=gate.site_id,
            online=gate.online,
            offline_for_s=gate.offline_for_s,
            faults=tuple(gate.faults),
            clock_synced=gate.clock_synced,
            outbox=gate.outbox,
        )
        for gate in fleet_status(store, now, offline_after_s, tz)
        if gate.registration not in ("revoked", "retired")  # not expected to be heard
    ]
    since = now - WINDOW
    dead, audit = dead_letters_table.c, audit_log_table.c
    with store.engine.connect() as conn:
        refused = conn.execute(
            select(func.count()).where(
                func.coalesce(dead.last_received_at, dead.received_at) >= since
            )
        ).scalar_one()
        failed = conn.execute(
            select(func.count()).where(audit.action == "login_failed", audit.at >= since)
        ).scalar_one()
    expiring = []
    if ca_file is not None:
        try:
            certificate = x509.load_pem_x509_certificate(ca_file.read_bytes())
            expiring.append(Expiring("the installation's CA", "", certificate.not_valid_after_utc))
        except (OSError, ValueError) as exc:
            log.warning("alerts: the CA %s cannot be read (%s)", ca_file, exc)
    return Snapshot(gates, int(refused), int(failed), expiring, checkins_today(store, now, tz))


def checkins_today(store: Store, now: datetime, tz: ZoneInfo) -> list[CheckinsToday]:
    """Each self check-in location's entries since the site's midnight (issue 18)."""
    c = entries_table.c
    query = (
        select(c.device_id, c.site_id, func.count())
        .where(c.ts >= local_day_start(now, tz), c.credential_type == CredentialType.SELF.value)
        .group_by(c.device_id, c.site_id)
    )
    with store.engine.connect() as conn:
        return [CheckinsToday(str(d), str(s), int(n)) for d, s, n in conn.execute(query)]


class AlertTask:
    def __init__(
        self,
        look_now: Callable[[datetime], Snapshot],
        rules: AlertRules,
        routes: list[Route],
        *,
        every_s: float = 30.0,
        clear_after_s: float = CLEAR_AFTER_S,
        clock: Callable[[], datetime],
        kept: AlertRows | None = None,
        more_routes: Callable[[], list[Route]] | None = None,
    ) -> None:
        self.look_now = look_now
        self.rules = rules
        self.tracker = AlertTracker(clear_after_s)
        self.dispatcher = AlertDispatcher(routes, more_routes)
        self.kept = kept  # None: nothing kept across a restart
        self.every_s = every_s
        self.clock = clock
        self.looks = 0
        self.told: list[Change] = []  # every change delivered or tried (tests, the log)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restored = kept is None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def once(self) -> list[Change]:
        now = self.clock()
        if not self._restored and self.kept is not None:
            self.tracker.restore(alert_of(row) for row in self.kept.live())
            self._restored = True
        changes = self.tracker.update(find_problems(self.look_now(now), self.rules, now), now)
        if changes:
            for change in changes:
                log.warning("alert %s: %s", change.event, change.alert.problem.summary_en)
            self.told += changes
            self.dispatcher.deliver(changes)
        if self.kept is not None:
            cleared = [(c.alert.problem.key, c.at) for c in changes if c.event == "cleared"]
            self.kept.save([tracked(alert) for alert in self.tracker.alerts()], cleared)
        self.looks += 1
        return changes

    def _run(self) -> None:
        pause = 0.0  # the first look at once
        while not self._stop.wait(pause):
            pause = self.every_s
            try:
                self.once()
            except Exception:  # the alerts must not end for one bad look
                log.exception("alerts: a look failed; trying again")


def alert_of(row: AlertRow) -> Alert:
    problem = Problem(
        row.key, row.kind, row.site_id, row.device_id, row.for_s, row.summary_en, row.summary_vi
    )
    return Alert(
        problem,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        opened_at=row.opened_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


def tracked(alert: Alert) -> TrackedAlert:
    problem = alert.problem
    return TrackedAlert(
        key=problem.key,
        kind=problem.kind,
        site_id=problem.site_id,
        device_id=problem.device_id,
        for_s=problem.for_s,
        summary_en=problem.summary_en,
        summary_vi=problem.summary_vi,
        first_seen=alert.first_seen,
        last_seen=alert.last_seen,
        opened_at=alert.opened_at,
    )
