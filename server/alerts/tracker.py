"""Problems over time → alerts that open once and clear once (issue 16): never a storm.

    tracker = AlertTracker()
    for change in tracker.update(find_problems(snapshot, rules, now), now): deliver(change)

A problem opens an alert once it has lasted its `for_s` (seen on every look since it was first
seen); a problem gone before that is never told. An open alert clears once the problem has been
gone for `clear_after_s` (2 minutes): a gate that flaps online and offline opens one alert and
clears it once, not one pair per flap. Each alert can be acknowledged (who, when): it stays open
until the problem is gone, but a person has said they are on it.

The tracker itself keeps nothing on disk: `restore` gives it the alerts kept before a restart
(server/alerts/task.py saves `alerts()` after each look in server/store/alerts.py), so an alert
open before is not told again, and one whose problem went while the server was down clears once
(its `last_seen` is old) at the first look.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from server.alerts.rules import Problem

CLEAR_AFTER_S = 120.0


@dataclass(frozen=True)
class Alert:
    problem: Problem
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime | None = None  # None: not yet lasted its for_s (nobody told)
    acknowledged_by: str = ""
    acknowledged_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    event: Literal["opened", "cleared"]
    alert: Alert
    at: datetime


class AlertTracker:
    def __init__(self, clear_after_s: float = CLEAR_AFTER_S) -> None:
        self._clear_after_s = clear_after_s
        self._alerts: dict[str, Alert] = {}

    def update(self, problems: list[Problem], now: datetime) -> list[Change]:
        """One look's problems; the alerts opened and cleared by it, in key order."""
        changes: list[Change] = []
        present = {problem.key: problem for problem in problems}
        for key, problem in sorted(present.items()):
            alert = self._alerts.get(key)
            if alert is None:
                alert = Alert(problem, first_seen=now, last_seen=now)
            else:
                alert = replace(alert, problem=problem, last_seen=now)
            lasted = (now - alert.first_seen).total_seconds()
            if alert.opened_at is None and lasted >= problem.for_s:
                alert = replace(alert, opened_at=now)
                changes.append(Change("opened", alert, now))
            self._alerts[key] = alert
        for key in sorted(set(self._alerts) - set(present)):
            alert = self._alerts[key]
            if alert.opened_at is None:
                del self._alerts[key]  # gone before it lasted: nobody was told
            elif (now - alert.last_seen).total_seconds() >= self._clear_after_s:
                del self._alerts[key]
                changes.append(Change("cleared", alert, now))
        return changes

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Hold `alerts` (kept before a restart) as if this tracker had seen them itself."""
        for alert in alerts:
            self._alerts[alert.problem.key] = alert

    def alerts(self) -> list[Alert]:
        """Every alert held, told or not yet, by key."""
        return [self._alerts[key] for key in sorted(self._alerts)]

    def open_alerts(self, sites: frozenset[str] | None = None) -> list[Alert]:
        """The alerts told and not cleared (of `sites` only, when given), oldest first."""
        return sorted(
            (
                alert
                for alert in self._alerts.values()
                if alert.opened_at is not None and (sites is None or alert.problem.site_id in sites)
            ),
            key=lambda alert: (alert.opened_at or alert.first_seen, alert.problem.key),
        )

    def acknowledge(self, key: str, who: str, now: datetime) -> Alert | None:
        alert = self._alerts.get(key)
        if alert is None or alert.opened_at is None:
            return None
        alert = replace(alert, acknowledged_by=who, acknowledged_at=now)
        self._alerts[key] = alert
        return alert
