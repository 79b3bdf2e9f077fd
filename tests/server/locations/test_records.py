"""Check-in locations in the real store, on SQLite and PostgreSQL (issue 18): a poster's token
names its location; an altered, forged, disabled or re-keyed one names none."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import URL

from protocol.verdicts import Direction
from server.locations.records import LocationError, Locations
from server.locations.tokens import location_of_token, location_token
from server.store.database import Store
from tests.support.web import BACKENDS, START, both_backends

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


def test_a_location_is_made_listed_and_found_by_its_poster_s_token(store: Store) -> None:
    rows = Locations(store.engine)
    lobby = rows.add("  Quầy lễ tân   tầng 1 ", site_id="hq", direction=Direction.IN, now=START)
    annex = rows.add("Chợ Bến Thành, sạp 12", site_id="annex", direction=Direction.OUT, now=START)
    assert lobby.name == "Quầy lễ tân tầng 1" and lobby.location_id.startswith("loc-")
    assert lobby.device_id == lobby.location_id and len(lobby.key) == 32
    assert [found.location_id for found in rows.listed()] == [annex.location_id, lobby.location_id]
    assert rows.listed(frozenset({"hq"})) == [lobby]
    assert rows.by_token(lobby.token) == lobby
    assert location_of_token(lobby.token) == lobby.location_id
    assert lobby.key.hex() not in lobby.token, "the key never leaves the database"


def test_an_altered_forged_disabled_or_rekeyed_token_names_no_location(store: Store) -> None:
    rows = Locations(store.engine)
    lobby = rows.add("Sảnh", site_id="hq", direction=Direction.IN, now=START)
    other = rows.add("Cổng sau", site_id="hq", direction=Direction.IN, now=START)
    location_id, signature = lobby.token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (
        f"{location_id}.{flipped}",  # the signature altered
        f"{other.location_id}.{signature}",  # another location's id under this signature
        location_token(lobby.location_id, b"\0" * 32),  # signed without the key
        location_token("loc-aaaaaaaaaa", lobby.key),  # an id that does not exist
        lobby.location_id,
        "",
        "loc-../../etc.passwd",
        lobby.token + "x",
        "<script>alert(1)</script>",
    ):
        assert rows.by_token(bad) is None, bad
    assert rows.disable(lobby.location_id)
    assert rows.by_token(lobby.token) is None, "a copied poster stops working"
    assert rows.disable(lobby.location_id, enabled=True)
    assert rows.by_token(lobby.token) == rows.get(lobby.location_id)
    rekeyed = rows.rekey(lobby.location_id)
    assert rekeyed is not None and rows.by_token(lobby.token) is None
    assert rows.by_token(rekeyed.token) == rekeyed
    assert not rows.disable("loc-aaaaaaaaaa") and rows.rekey("loc-aaaaaaaaaa") is None


@pytest.mark.parametrize(
    ("name", "site"), [("", "hq"), ("x" * 121, "hq"), ("Sảnh\nhai dòng", "hq"), ("Sảnh", "")]
)
def test_a_location_without_a_usable_name_or_site_is_refused(
    store: Store, name: str, site: str
) -> None:
    with pytest.raises(LocationError):
        Locations(store.engine).add(name, site_id=site, direction=Direction.IN, now=START)
    assert Locations(store.engine).listed() == []
