"""Check-in locations (issue 18; table `locations`): a place with a poster, where people check
in with their own phone. Not a device: never online or offline, no device alerts.

    rows = Locations(store.engine)
    made = rows.add("Quầy lễ tân", site_id="hq", direction=Direction.IN, now=...)
    made.token                              # what the poster's URL carries (tokens.py)
    rows.by_token(token)                    # the location, or None: forged, altered, disabled
    rows.disable(made.location_id)          # a copied poster stops working

A location's id is short and random (`loc-` and 10 base32 letters: it is also the "gate" its
entries name, so it fits a device id); its key (32 random bytes, kept in the database only)
signs its poster's token. `rekey` gives a location a new key: every poster printed before stops
working, and a new one is printed.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, RowMapping, insert, select, update

from protocol.verdicts import Direction
from server.locations.tokens import (
    LOCATION_ID_PATTERN,
    location_of_token,
    location_token,
    token_matches,
)
from server.store.tables import locations_table

MAX_NAME = 120


@dataclass(frozen=True)
class Location:
    location_id: str
    site_id: str
    name: str
    direction: Direction
    enabled: bool
    created_at: datetime
    key: bytes  # signs the poster's token; never shown, never in a URL

    @property
    def token(self) -> str:
        """What its poster's URL carries: its id, signed with its key."""
        return location_token(self.location_id, self.key)

    @property
    def device_id(self) -> str:
        """The "gate" its entries name (entries, tracing, exports)."""
        return self.location_id


class LocationError(ValueError):
    """A location that cannot be made as asked; the message says why."""


def new_location_id() -> str:
    letters = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:10]
    return f"loc-{letters}"


class Locations:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, name: str, *, site_id: str, direction: Direction, now: datetime) -> Location:
        if not name.isprintable():
            raise LocationError("a location's name is one line of printable text")
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise LocationError(f"a location's name is 1 to {MAX_NAME} characters")
        if not site_id:
            raise LocationError("a location belongs to a site: give --site")
        made = Location(
            location_id=new_location_id(),
            site_id=site_id,
            name=name,
            direction=direction,
            enabled=True,
            created_at=now,
            key=secrets.token_bytes(32),
        )
        with self._engine.begin() as conn:
            conn.execute(
                insert(locations_table).values(
                    location_id=made.location_id,
                    site_id=site_id,
                    name=name,
                    direction=direction.value,
                    enabled=True,
                    created_at=now,
                    key=made.key.hex(),
                )
            )
        return made

    def get(self, location_id: str) -> Location | None:
        if not LOCATION_ID_PATTERN.fullmatch(location_id):
            return None
        table = locations_table
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.location_id == location_id)).first()
        return None if row is None else _location(row._mapping)

    def listed(self, sites: frozenset[str] | None = None) -> list[Location]:
        """Every location (of `sites`, None: all), by site then name."""
        table = locations_table
        query = select(table).order_by(table.c.site_id, table.c.name, table.c.location_id)
        if sites is not None:
            query = query.where(table.c.site_id.in_(sorted(sites)))
        with self._engine.connect() as conn:
            return [_location(row._mapping) for row in conn.execute(query)]

    def by_token(self, token: str) -> Location | None:
        """The enabled location a poster's token names and was signed for; None for a token
        forged, altered, of a location disabled or re-keyed, or of none."""
        location_id = location_of_token(token)
        found = self.get(location_id) if location_id is not None else None
        if found is None or not found.enabled:
            return None
        return found if token_matches(token, found.location_id, found.key) else None

    def disable(self, location_id: str, enabled: bool = False) -> bool:
        """Stop (or, `enabled`, start again) taking check-ins there; False for no such location."""
        table = locations_table
        with self._engine.begin() as conn:
            done = conn.execute(
                update(table).where(table.c.location_id == location_id).values(enabled=enabled)
            )
        return bool(done.rowcount)

    def rekey(self, location_id: str) -> Location | None:
        """A new key: every poster printed before stops working; None for no such location."""
        table = locations_table
        with self._engine.begin() as conn:
            done = conn.execute(
                update(table)
                .where(table.c.location_id == location_id)
                .values(key=secrets.token_bytes(32).hex())
            )
        return self.get(location_id) if done.rowcount else None


def _location(values: RowMapping) -> Location:
    return Location(
        location_id=values["location_id"],
        site_id=values["site_id"],
        name=values["name"],
        direction=Direction(values["direction"]),
        enabled=bool(values["enabled"]),
        created_at=values["created_at"],
        key=bytes.fromhex(values["key"]),
    )
