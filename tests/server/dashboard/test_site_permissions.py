"""Sites in every permission (issue 16): a manager of site A, given the data of sites A and B,
never sees B's gates, names or ID numbers, on any route of the app; an admin sees both.

The routes are read from the app itself (as the 401/403 tests are), so a new route is tested the
day it is added: every GET route (with the queries that show the most: unmasked, B's site asked
for by name, a person search) and every POST route (with the forms that show data), by a
session and by an API token, and each answer's body is searched for B's markers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from protocol.messages import Status
from protocol.verdicts import Direction
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.store.alerts import AlertRows, TrackedAlert
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.gates import GateRegistry, NewGate
from tests.support.web import (
    FAST_HASHER,
    PASSWORD,
    START,
    MovableClock,
    app_routes,
    cccd_event,
    log_in,
)

SITE_A, SITE_B = "site-alpha", "site-bravo"
GATE_A, GATE_B = "gate-a1", "gate-bx9"
REGISTERED_A, REGISTERED_B = "gate-areg", "gate-breg"  # in the registry only
A_PERSON, A_NAME = "079100000011", "Trần Alphaname"
B_PERSON, B_NAME = "079888777666", "Zyxbeta Bravoname"
SHARED = "079190000001"  # passed both sites: the one traced
# What of site B must never reach site A's manager (the masked name keeps only initials, so
# the names are looked for whole; a masked row still names its gate and site).
B_MARKERS = (GATE_B, REGISTERED_B, SITE_B, B_PERSON, "Zyxbeta", "Bravoname")
MANAGER_A = "manager-a"


class Releaser:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, device_id: str, by: str, command_id: str) -> str | None:
        self.calls.append(device_id)
        return None


def seed(store: Store) -> None:
    """Gates and entries at both sites this morning; SHARED passes A, then B, near a local."""
    for gate, site in ((GATE_A, SITE_A), (GATE_B, SITE_B)):
        status = Status(state="online", ts=START, version="t", site_id=site, location="Sảnh")
        store.record_status(gate, status, START)
    registry = GateRegistry(store.engine)
    for number, (gate, site) in enumerate(((REGISTERED_A, SITE_A), (REGISTERED_B, SITE_B))):
        registry.add(NewGate(gate, site), f"{number:064x}", START + timedelta(days=1), START)
    minutes = timedelta(minutes=1)
    events = [
        cccd_event(1, subject=SHARED, ts=START - 30 * minutes, device=GATE_A, site=SITE_A),
        cccd_event(
            2, subject=A_PERSON, name=A_NAME, ts=START - 28 * minutes, device=GATE_A, site=SITE_A
        ),
        cccd_event(1, subject=SHARED, ts=START - 10 * minutes, device=GATE_B, site=SITE_B),
        cccd_event(
            2, subject=B_PERSON, name=B_NAME, ts=START - 8 * minutes, device=GATE_B, site=SITE_B
        ),
        cccd_event(
            3,
            subject=B_PERSON,
            name=B_NAME,
            ts=START - 5 * minutes,
            device=GATE_B,
            site=SITE_B,
            direction=Direction.IN,
        ),
    ]
    store.add_events(events, received_at=START)
    # An open alert at each site (A's first: its id is 1, the acknowledge routes' path value).
    alerts = [
        TrackedAlert(
            key=f"offline:{gate}", kind="offline", site_id=site, device_id=gate, for_s=0.0,
            summary_en=f"gate {gate} is offline", summary_vi=f"cổng {gate} mất kết nối",
            first_seen=START - 20 * minutes, last_seen=START, opened_at=START - 20 * minutes,
        )
        for gate, site in ((GATE_A, SITE_A), (GATE_B, SITE_B))
    ]  # fmt: skip
    kept = AlertRows(store.engine)
    kept.save(alerts[:1], [])
    kept.save(alerts, [])


@pytest.fixture
def releaser() -> Releaser:
    return Releaser()


@pytest.fixture
def site_app(store: Store, clock: MovableClock, releaser: Releaser) -> FastAPI:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)  # every site
    accounts.add_user(MANAGER_A, Role.MANAGER, PASSWORD, sites=[SITE_A])
    seed(store)
    return create_web_app(
        store,
        WebSettings(),
        clock=clock,
        monotonic=clock.monotonic,
        hasher=FAST_HASHER,
        door_releaser=releaser,
    )


@dataclass
class Caller:
    """Someone asking, by a login session (cookies and the CSRF token) or an API token."""

    client: TestClient
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)

    def get(self, url: str) -> str:
        answer = self.client.get(url, headers=self.headers, follow_redirects=True)
        assert answer.status_code < 500, (url, answer.status_code)
        return answer.text

    def post(self, url: str, data: dict[str, str]) -> str:
        answer = self.client.post(
            url, data={**self.form, **data}, headers=self.headers, follow_redirects=True
        )
        assert answer.status_code < 500, (url, answer.status_code)
        return answer.text

    def handle(self) -> str:
        """A search handle for SHARED, as the tracing form makes it for this caller."""
        answer = self.client.post(
            "/tracing/search", data={**self.form, "subject": SHARED}, headers=self.headers
        )
        assert answer.status_code == 303, answer.text
        return parse_qs(urlsplit(answer.headers["location"]).query)["q"][0]


def caller(app: FastAPI, name: str, via: str) -> Caller:
    client = TestClient(app, base_url="http://testserver", follow_redirects=False)
    if via == "session":
        return Caller(client, form={"csrf_token": log_in(client, name)})
    accounts: Accounts = app.state.web.accounts
    role = Role.ADMIN if name == "admin" else Role.MANAGER
    sites = [SITE_A] if name == MANAGER_A else []
    token = accounts.create_token(f"{name}-script", role, sites=sites)
    return Caller(client, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(params=["session", "token"])
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manager_a(site_app: FastAPI, via: str) -> Iterator[Caller]:
    asking = caller(site_app, MANAGER_A, via)
    with asking.client:
        yield asking


@pytest.fixture
def admin(site_app: FastAPI, via: str) -> Iterator[Caller]:
    asking = caller(site_app, "admin", via)
    with asking.client:
        yield asking


# --- every route ---------------------------------------------------------------------------------

PATH_VALUES = {
    "subject_id": SHARED,
    "lang": "en",
    "device_id": GATE_A,
    "name": "index.html",
    "alert_id": "1",  # site A's alert (seed)
}
# The queries that show the most; every GET route is asked with "" too.
GET_QUERIES = {
    "/api/v1/entries": ["?unmask=true&page_size=500", f"?site={SITE_B}&unmask=true", "?person=Zyx"],
    "/api/v1/entries/export": ["?format=csv&unmask=true", "?format=json&unmask=true"],
    "/export/download": ["?format=json&unmask=true", f"?format=csv&site={SITE_B}"],
    "/entries": [f"?site={SITE_B}", f"?gate={GATE_B}"],
    "/live/entries": [f"?site={SITE_B}"],
    "/export": [f"?site={SITE_B}"],
    "/api/v1/people/{subject_id}/trace": ["?window_min=1440"],
    "/api/v1/people/{subject_id}/trace/export": ["?format=json&window_min=1440"],
    "/tracing": ["?q={handle}&window=1440"],
    "/tracing/export": ["?q={handle}&format=json&window_min=1440"],
}
# The POSTs that show data, with their forms; every other POST is sent with the CSRF token only.
POST_FORMS: dict[str, list[dict[str, str]]] = {
    "/entries/unmask": [{}, {"site": SITE_B}, {"gate": GATE_B}],
    "/entries/search": [{"site": SITE_B}, {"person": "Zyxbeta"}],
    "/export/search": [{"site": SITE_B}, {"person": B_PERSON}],
    "/tracing/search": [{"subject": SHARED, "window": "1440"}, {"subject": B_PERSON}],
    "/gates/{device_id}/release": [{}],
}
NOT_POSTED = {"/logout"}  # it ends the session the other routes are asked with


def _routes() -> list[tuple[str, str]]:
    app = create_web_app(Store("sqlite://"), WebSettings())
    return [(method, path) for method, path, _ in app_routes(app)]


ROUTES = _routes()


def test_the_route_list_has_the_pages_and_the_api() -> None:
    paths = {path for _, path in ROUTES}
    assert set(GET_QUERIES) | set(POST_FORMS) <= paths
    assert {"/", "/occupancy", "/api/v1/devices", "/api/v1/occupancy", "/live/fleet"} <= paths


def _requests(method: str, path: str) -> list[tuple[str, dict[str, str] | None]]:
    url = path.format(**{**PATH_VALUES, "handle": "{handle}"})
    if method == "GET":
        return [(url + query, None) for query in ["", *GET_QUERIES.get(path, [])]]
    return [(url, form) for form in POST_FORMS.get(path, [{}])]


@dataclass(frozen=True)
class Asked:
    request: str  # the URL and the form as sent
    body: str

    def leaked(self) -> list[str]:
        """B's markers in the answer that the request did not hold itself (a filter form shows
        the site or the person asked for: the asker's own words, not B's data)."""
        return [m for m in B_MARKERS if m in self.body and m not in self.request]


def _ask(asking: Caller, method: str, path: str) -> list[Asked]:
    if path in NOT_POSTED:
        return []
    answers = []
    for url, form in _requests(method, path):
        if "{handle}" in url:
            url = url.replace("{handle}", asking.handle())
        body = asking.get(url) if form is None else asking.post(url, form)
        answers.append(Asked(f"{url} {form}", body))
    return answers


def _bodies(answers: list[Asked]) -> str:
    return "\n".join(answer.body for answer in answers)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=lambda v: str(v))
def test_a_manager_of_site_a_never_sees_site_b(manager_a: Caller, method: str, path: str) -> None:
    for answer in _ask(manager_a, method, path):
        assert answer.leaked() == [], f"{method} {answer.request} shows site B's {answer.leaked()}"


# Routes that show gates or entries: an admin sees both sites there, and site A's manager sees A
# (so the test above is not passed by an empty page).
SHOWING = [
    ("GET", "/"),
    ("GET", "/live/fleet"),
    ("GET", "/api/v1/devices"),
    ("GET", "/entries"),
    ("GET", "/live/entries"),
    ("GET", "/api/v1/entries"),
    ("GET", "/api/v1/entries/export"),
    ("GET", "/export/download"),
    ("GET", "/occupancy"),
    ("GET", "/live/occupancy"),
    ("GET", "/api/v1/occupancy"),
    ("GET", "/alerts"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/people/{subject_id}/trace"),
    ("GET", "/api/v1/people/{subject_id}/trace/export"),
    ("GET", "/tracing"),
    ("GET", "/tracing/export"),
    ("POST", "/entries/unmask"),
    ("POST", "/tracing/search"),
]


@pytest.mark.parametrize(("method", "path"), SHOWING, ids=lambda v: str(v))
def test_an_admin_sees_both_sites_and_the_manager_site_a(
    admin: Caller, site_app: FastAPI, via: str, method: str, path: str
) -> None:
    assert (method, path) in ROUTES
    admin_bodies = _bodies(_ask(admin, method, path))
    assert GATE_A in admin_bodies and GATE_B in admin_bodies
    asking = caller(site_app, MANAGER_A, via)
    with asking.client:
        assert GATE_A in _bodies(_ask(asking, method, path))


# --- targeted ------------------------------------------------------------------------------------


def test_tracing_searches_only_the_manager_s_sites_and_says_so(
    manager_a: Caller, admin: Caller, store: Store
) -> None:
    url = f"/api/v1/people/{SHARED}/trace?window_min=1440"
    limited = json.loads(manager_a.get(url))
    assert limited["sites"] == [SITE_A]
    assert [visit["site_id"] for visit in limited["visits"]] == [SITE_A]
    assert [person["subject_id"] for person in limited["people"]] == [A_PERSON]

    everywhere = json.loads(admin.get(url))
    assert everywhere["sites"] is None
    assert [visit["site_id"] for visit in everywhere["visits"]] == [SITE_A, SITE_B]
    assert {person["subject_id"] for person in everywhere["people"]} == {A_PERSON, B_PERSON}

    page = manager_a.get(f"/tracing?q={manager_a.handle()}&window=1440")
    assert 'id="tracing-sites"' in page and SITE_A in page
    assert 'id="tracing-sites"' not in admin.get(f"/tracing?q={admin.handle()}")
    traces = [r for r in AuditLog(store.engine).rows(action="trace") if MANAGER_A in r.actor]
    assert traces and all(row.details["sites"] == [SITE_A] for row in traces)


def test_a_search_for_a_person_of_site_b_by_a_manager_of_a_finds_nothing(
    manager_a: Caller,
) -> None:
    found = json.loads(manager_a.get(f"/api/v1/entries?person={B_PERSON}&unmask=true"))
    assert (found["total"], found["items"]) == (0, [])
    traced = json.loads(manager_a.get(f"/api/v1/people/{B_PERSON}/trace"))
    assert (traced["visits"], traced["people"]) == ([], [])


def test_an_export_holds_only_the_manager_s_sites(
    manager_a: Caller, admin: Caller, store: Store
) -> None:
    def sites_of(asking: Caller) -> list[str]:
        text = asking.get("/api/v1/entries/export?format=csv&unmask=true").lstrip("\ufeff")
        return sorted(row["site_id"] for row in csv.DictReader(io.StringIO(text)))

    assert sites_of(manager_a) == [SITE_A, SITE_A]
    assert sites_of(admin) == [SITE_A, SITE_A, SITE_B, SITE_B, SITE_B]
    exports = [r for r in AuditLog(store.engine).rows(action="export") if "manager-a" in r.actor]
    assert [row.details["filter"]["sites"] for row in exports] == [[SITE_A]]


def test_an_unmasking_shows_and_audits_only_the_manager_s_sites(
    manager_a: Caller, store: Store
) -> None:
    page = manager_a.post("/entries/unmask", {})
    assert A_PERSON in page and A_NAME in page and B_PERSON not in page

    [row] = AuditLog(store.engine).rows(action="unmask")
    assert MANAGER_A in row.actor
    assert row.details["filter"]["sites"] == [SITE_A]
    assert row.details["subjects"] == sorted([A_PERSON, SHARED])


def test_a_door_of_another_site_is_refused(
    manager_a: Caller, releaser: Releaser, store: Store
) -> None:
    def release(gate: str) -> int:
        answer = manager_a.client.post(
            f"/gates/{gate}/release", data=manager_a.form, headers=manager_a.headers
        )
        return answer.status_code

    assert release(GATE_B) == 403
    assert releaser.calls == [] and AuditLog(store.engine).rows(action="door") == []
    assert release(GATE_A) == 303 and releaser.calls == [GATE_A]


def test_an_alert_of_another_site_is_404_and_one_of_the_manager_s_is_acknowledged(
    manager_a: Caller, store: Store
) -> None:
    ids = {row.site_id: row.id for row in AlertRows(store.engine).live()}

    def acknowledge(site: str) -> int:
        url = f"/alerts/{ids[site]}/acknowledge"
        if manager_a.headers:  # a token: the API's route
            url = "/api/v1" + url
        answer = manager_a.client.post(url, data=manager_a.form, headers=manager_a.headers)
        return answer.status_code

    assert acknowledge(SITE_B) == 404
    assert AuditLog(store.engine).rows(action="alert") == []
    assert acknowledge(SITE_A) in (200, 303)
    [row] = AuditLog(store.engine).rows(action="alert")
    assert (row.site_id, row.subject) == (SITE_A, GATE_A)


def test_me_names_the_sites(manager_a: Caller, admin: Caller) -> None:
    assert json.loads(manager_a.get("/api/v1/me"))["sites"] == [SITE_A]
    assert json.loads(admin.get("/api/v1/me"))["sites"] is None
