"""Times at the ends of what a datetime holds: a gate's clock may say anything (unsynchronised
after a power cut, or a hostile gate), and every page, feed and export that shows a stored time
must still answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.users import Role
from server.store.database import Store
from tests.support.web import START, bearer, cccd_event, log_in, session_csrf

PERSON = "079190000009"
EXTREMES = [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),  # the site's +07:00 has no such time
    datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
]


@pytest.fixture
def extreme(store: Store) -> Store:
    """An entry now, and one at each end of time from a gate whose clock is not synchronised."""
    events = [cccd_event(1, subject=PERSON, ts=START)]
    events += [
        cccd_event(2 + n, subject=PERSON, ts=ts).model_copy(update={"clock_synced": False})
        for n, ts in enumerate(EXTREMES)
    ]
    store.add_events(events, received_at=START)
    return store


API_PATHS = [
    "/api/v1/entries",
    "/api/v1/entries?unmask=true",
    "/api/v1/entries/export?format=csv&unmask=true",
    "/api/v1/entries/export?format=json&unmask=true",
    f"/api/v1/people/{PERSON}/trace",
    f"/api/v1/people/{PERSON}/trace/export?format=csv",
    f"/api/v1/people/{PERSON}/trace/export?format=json",
    "/api/v1/occupancy",
]


@pytest.mark.parametrize("path", API_PATHS)
def test_every_api_answer_holds_entries_at_the_ends_of_time(
    app: FastAPI, client: TestClient, extreme: Store, path: str
) -> None:
    response = client.get(path, headers=bearer(app, Role.MANAGER))
    assert response.status_code == 200, response.text[:500]
    assert response.text  # streamed to the end


PAGES = ["/entries", "/live/entries", "/export", "/tracing", "/occupancy", "/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_shows_entries_at_the_ends_of_time(
    client: TestClient, extreme: Store, path: str
) -> None:
    log_in(client, Role.MANAGER.label)
    response = client.get(path)
    assert response.status_code == 200, response.text[:500]


def test_unmasking_and_downloading_entries_at_the_ends_of_time(
    client: TestClient, extreme: Store
) -> None:
    log_in(client, Role.MANAGER.label)
    csrf = session_csrf(client)
    unmasked = client.post("/entries/unmask", data={"csrf_token": csrf})
    assert unmasked.status_code == 200, unmasked.text[:500]
    assert "9999" in unmasked.text and "0001" in unmasked.text
    download = client.get("/export/download?format=csv&unmask=true")
    assert download.status_code == 200, download.text[:500]
    assert len(download.text.strip().splitlines()) == 1 + 3


def test_tracing_a_person_seen_at_the_ends_of_time(client: TestClient, extreme: Store) -> None:
    log_in(client, Role.MANAGER.label)
    csrf = session_csrf(client)
    found = client.post("/tracing/search", data={"csrf_token": csrf, "subject": PERSON})
    assert found.status_code == 303
    page = client.get(found.headers["location"])
    assert page.status_code == 200, page.text[:500]  # its default period holds the entry now
    assert "Nguyễn Văn An" in page.text
