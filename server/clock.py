"""Wall-clock time for the server side, passed in as a dependency so tests can move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def local_day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """Midnight of `now`'s day in the site's time zone, as an aware UTC time."""
    local_midnight = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    return local_midnight.astimezone(UTC)


def local_day_end(now: datetime, tz: ZoneInfo) -> datetime:
    """The next local midnight after `now`, as an aware UTC time."""
    next_day = now.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(next_day, time(0), tzinfo=tz).astimezone(UTC)
