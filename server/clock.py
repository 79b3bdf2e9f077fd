"""Wall-clock time for the server side, passed in as a dependency so tests can move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta, tzinfo
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


def in_zone(value: datetime, tz: tzinfo) -> datetime:
    """`value` in the time zone `tz`, or in UTC where `tz` has no such time: a gate's clock may
    say 9999-12-31T23:59:59Z (unsynchronised, or hostile), which is stored as it came, and
    +07:00 of it is past the last year a datetime holds. Every page, feed and export that shows
    a stored time goes through here, so no stored value can stop one."""
    try:
        return value.astimezone(tz)
    except OverflowError:
        return value.astimezone(UTC)


def shifted(value: datetime, delta: timedelta) -> datetime:
    """`value + delta`, held at the first or last moment a datetime has rather than overflowing
    (a window around a stored 9999-12-31 or 0001-01-01, from a gate's wrong clock)."""
    try:
        return value + delta
    except OverflowError:
        edge = datetime.max if delta > timedelta(0) else datetime.min
        return edge.replace(tzinfo=value.tzinfo)
