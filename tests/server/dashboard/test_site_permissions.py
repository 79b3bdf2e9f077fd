"""Sites in every permission (issue 16): a manager of site A, given the data of sites A and B,
never sees B's gates, names or ID numbers, on any route of the app; an admin sees both. A tracer
gets an expected verdict on every route (its tracing and its account, else 403) and sees no one
but the traced person and their contacts; the audit log is read per site. A technician (issue
17) gets an expected verdict on every route too (the fleet, a gate's page, the alerts, the gate
actions and its account, else 403) and never a name or an ID number, nor, of site A, site B.

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
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import insert

from protocol.messages import Status
from protocol.verdicts import Direction
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.i18n.translate import Translator
from server.dashboard.preview.relay import PreviewRelay
from server.dashboard.settings import WebSettings
from server.store.alerts import AlertRows, TrackedAlert
from server.store.audit import AuditLog
from server.store.database import Store
from server.store.gates import GateRegistry, NewGate
from server.store.tables import locations_table
from tests.support.web import (
    FAST_HASHER,
    PASSWORD,
    START,
    MovableClock,
    app_routes,
    cccd_event,
    log_in,
    login_form_token,
)

SITE_A, SITE_B = "site-alpha", "site-bravo"
GATE_A, GATE_B = "gate-a1", "gate-bx9"
REGISTERED_A, REGISTERED_B = "gate-areg", "gate-breg"  # in the registry only
A_PERSON, A_NAME = "079100000011", "Trần Alphaname"
B_PERSON, B_NAME = "079888777666", "Zyxbeta Bravoname"
SHARED = "079190000001"  # passed both sites: the one traced
# What of site B must never reach site A's manager (the masked name keeps only initials, so
# the names are looked for whole; a masked row still names its gate and site).
LOCATION_A, LOCATION_B = "loc-aaaaaaaaaa", "loc-bbbbbbbbbb"  # self check-in (issue 18)
B_MARKERS = (GATE_B, REGISTERED_B, LOCATION_B, SITE_B, B_PERSON, "Zyxbeta", "Bravoname")
MANAGER_A = "manager-a"
TRACER_A = "tracer-a"  # a tracer of site A only
TECHNICIAN_A = "technician-a"  # a technician of site A only
REASON = "case F0-17, outbreak at the market"
# Passed site A three days before: no contact of anyone traced here, so never shown to a tracer.
UNRELATED, UNRELATED_NAME = "079333222111", "Qwertyunrelated Person"
ROLES = {"admin": Role.ADMIN, "manager": Role.MANAGER, "viewer": Role.VIEWER}
ROLES |= {"tracer": Role.TRACER, TRACER_A: Role.TRACER, MANAGER_A: Role.MANAGER}
ROLES |= {"technician": Role.TECHNICIAN, TECHNICIAN_A: Role.TECHNICIAN}


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
    # A self check-in location at each site (issue 18), by known ids: the routes' path value.
    with store.engine.begin() as conn:
        for location_id, site, name in ((LOCATION_A, SITE_A, "Sảnh"), (LOCATION_B, SITE_B,
                                        "Zyxbeta sạp")):  # fmt: skip
            row = {"location_id": location_id, "site_id": site, "name": name, "direction": "in"}
            conn.execute(
                insert(locations_table).values(
                    **row, enabled=True, created_at=START, key=bytes(32).hex()
                )
            )


@pytest.fixture
def releaser() -> Releaser:
    return Releaser()


@pytest.fixture
def site_app(store: Store, clock: MovableClock, releaser: Releaser) -> FastAPI:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)  # every site
    accounts.add_user(MANAGER_A, Role.MANAGER, PASSWORD, sites=[SITE_A])
    accounts.add_user(TRACER_A, Role.TRACER, PASSWORD, sites=[SITE_A])
    accounts.add_user(TECHNICIAN_A, Role.TECHNICIAN, PASSWORD, sites=[SITE_A])
    seed(store)
    return create_web_app(
        store,
        WebSettings(public_url="https://checkin.example.vn"),  # the posters' downloads work
        clock=clock,
        monotonic=clock.monotonic,
        hasher=FAST_HASHER,
        door_releaser=releaser,
        preview=PreviewRelay(lambda device_id, payload: None),  # the gates asked: no one
    )


@dataclass
class Caller:
    """Someone asking, by a login session (cookies and the CSRF token) or an API token."""

    client: TestClient
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    name: str = ""  # the account's name

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

    def status(self, method: str, url: str, data: dict[str, str] | None = None) -> int:
        """The answer's status, redirects followed (a form's POST ends on its page)."""
        form = None if method == "GET" else {**self.form, **(data or {})}
        answer = self.client.request(
            method, url, data=form, headers=self.headers, follow_redirects=True
        )
        return answer.status_code

    def handle(self) -> str:
        """A search handle for SHARED, as the tracing form makes it for this caller (with the
        reason's handle, `&r=...`, since a tracer must give one)."""
        form = {**self.form, "subject": SHARED, "reason": REASON}
        answer = self.client.post("/tracing/search", data=form, headers=self.headers)
        assert answer.status_code == 303, answer.text
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        return query["q"][0] + "".join(f"&r={r}" for r in query.get("r", []))


def caller(app: FastAPI, name: str, via: str) -> Caller:
    client = TestClient(app, base_url="http://testserver", follow_redirects=False)
    if via == "session":
        return Caller(client, form={"csrf_token": log_in(client, name)}, name=name)
    accounts: Accounts = app.state.web.accounts
    role = ROLES[name]
    sites = [SITE_A] if name in (MANAGER_A, TRACER_A, TECHNICIAN_A) else []
    token = accounts.create_token(f"{name}-script", role, sites=sites)
    return Caller(client, headers={"Authorization": f"Bearer {token}"}, name=name)


# The route matrices below: every route by a session and by a token on SQLite, by a session on
# PostgreSQL. A token and a session of one role and sites ask the pages the same queries (the
# caller's sites in each WHERE), so PostgreSQL's half checks the SQL and SQLite's the two ways
# in; the targeted tests further down run on both backends by both ways in.
BY_SESSION_ON_POSTGRES = [("sqlite", "session"), ("sqlite", "token"), ("postgresql", "session")]
ROUTE_MATRIX = pytest.mark.parametrize(("store_url", "via"), BY_SESSION_ON_POSTGRES, indirect=True)


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
    # The check-in page's (server/checkin/): a poster's token of no location, so a 404 page,
    # public; tests/server/checkin/ tests it with real locations.
    "token": "loc-aaaaaaaaaa.AAAAAAAAAAAAAAAAAAAAAA",
    "location_id": LOCATION_A,  # site A's self check-in location (seed)
}
# The queries that show the most; every GET route is asked with "" too.
GET_QUERIES = {
    "/api/v1/entries": ["?unmask=true&page_size=500", f"?site={SITE_B}&unmask=true", "?person=Zyx"],
    "/api/v1/entries/export": ["?format=csv&unmask=true", "?format=json&unmask=true"],
    "/export/download": ["?format=json&unmask=true", f"?format=csv&site={SITE_B}"],
    "/entries": [f"?site={SITE_B}", f"?gate={GATE_B}"],
    "/live/entries": [f"?site={SITE_B}"],
    "/export": [f"?site={SITE_B}"],
    "/api/v1/people/{subject_id}/trace": ["?window_min=1440", "?window_min=1440&reason=case-7"],
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
    "/locations": [{"name": "Sảnh mới", "site": SITE_A}, {"name": "Cổng", "site": SITE_B}],
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
@ROUTE_MATRIX
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
    ("GET", "/live/alerts"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/people/{subject_id}/trace"),
    ("GET", "/api/v1/people/{subject_id}/trace/export"),
    ("GET", "/tracing"),
    ("GET", "/tracing/export"),
    ("POST", "/entries/unmask"),
    ("POST", "/tracing/search"),
]


@pytest.mark.parametrize(("method", "path"), SHOWING, ids=lambda v: str(v))
@ROUTE_MATRIX
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


def test_a_location_of_another_site_is_not_shown_and_404_on_its_actions(
    manager_a: Caller, admin: Caller, store: Store
) -> None:
    page = manager_a.get("/locations")
    assert LOCATION_A in page and LOCATION_B not in page and "Zyxbeta" not in page
    assert LOCATION_A in admin.get("/locations") and LOCATION_B in admin.get("/locations")
    for action in ("disable", "enable"):
        assert manager_a.status("POST", f"/locations/{LOCATION_B}/{action}") == 404
    for download in ("qr.png", "poster.svg", "poster.pdf"):
        assert manager_a.status("GET", f"/locations/{LOCATION_B}/{download}") == 404
        assert manager_a.status("GET", f"/locations/{LOCATION_A}/{download}") == 200
    assert manager_a.status("POST", "/locations", {"name": "Cổng", "site": SITE_B}) == 403
    assert AuditLog(store.engine).rows(action="location") == []
    assert manager_a.status("POST", f"/locations/{LOCATION_A}/disable") == 200  # its page, 303'd
    [row] = AuditLog(store.engine).rows(action="location")
    assert (row.subject, row.site_id, row.actor) == (
        LOCATION_A,
        SITE_A,
        actor(manager_a, MANAGER_A),
    )


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


# --- the tracer: a verdict for every route -------------------------------------------------------

# What a tracer may use: contact tracing (the page, its search, an old bookmark's /people/{id},
# the API's trace), its own account, and who it is. Every other route that needs a login answers
# it 403, and so does /metrics: a route added later is refused until it is put here.
TRACER_ROUTES = {
    ("GET", "/tracing"),
    ("POST", "/tracing/search"),
    ("GET", "/people/{subject_id}"),
    ("GET", "/api/v1/people/{subject_id}/trace"),
    ("GET", "/api/v1/me"),
    ("GET", "/account"),
    ("POST", "/account/language"),
    ("POST", "/account/password"),
}
REFUSED_PUBLIC = {("GET", "/metrics")}  # needs no login, yet answers a tracer 403
SESSION_ONLY = {("POST", "/account/password")}  # a token has no password: 403 for any role


def _guard(dependant: Any) -> Any:
    """The route's role check (require_role's), or None for a route open without a login."""
    pending = [dependant] if dependant is not None else []
    while pending:
        found = pending.pop()
        if hasattr(found.call, "min_role"):
            return found.call
        pending.extend(found.dependencies)
    return None


GUARDS = {
    (method, path): _guard(dependant)
    for method, path, dependant in app_routes(create_web_app(Store("sqlite://"), WebSettings()))
}


def tracer_verdict(method: str, path: str, via: str = "session") -> str:
    """The answer a tracer gets: "allowed", "403", or "public" (no login needed: the tracer
    gets what anyone gets)."""
    if via == "token" and (method, path) in SESSION_ONLY:
        return "403"
    if (method, path) in TRACER_ROUTES:
        return "allowed"
    if GUARDS[(method, path)] is not None or (method, path) in REFUSED_PUBLIC:
        return "403"
    return "public"


def test_the_routes_let_a_tracer_in_exactly_where_the_verdicts_say() -> None:
    assert set(GUARDS) >= TRACER_ROUTES
    let_in = {route for route, guard in GUARDS.items() if guard is not None and guard.tracer}
    assert let_in == TRACER_ROUTES
    assert tracer_verdict("GET", "/api/v1/audit") == tracer_verdict("GET", "/entries") == "403"


@pytest.fixture
def unrelated(store: Store) -> None:
    """A person no trace here reaches (three days before, at site A)."""
    store.add_events(
        [
            cccd_event(
                9,
                subject=UNRELATED,
                name=UNRELATED_NAME,
                ts=START - timedelta(days=3),
                device=GATE_A,
                site=SITE_A,
            )
        ],
        received_at=START,
    )


@pytest.fixture
def tracer(site_app: FastAPI, via: str, unrelated: None) -> Iterator[Caller]:
    asking = caller(site_app, "tracer", via)
    with asking.client:
        yield asking


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=lambda v: str(v))
@ROUTE_MATRIX
def test_a_tracer_gets_the_expected_verdict_on_every_route(
    tracer: Caller, via: str, method: str, path: str
) -> None:
    verdict = tracer_verdict(method, path, via)
    if path in NOT_POSTED or (verdict == "public" and path != "/metrics"):
        return
    for url, form in _requests(method, path):
        if "{handle}" in url:
            url = url.replace("{handle}", tracer.handle())
        status = tracer.status(method, url, form)
        if verdict == "403":
            assert status == 403, f"{method} {url} {form}: {status}"
        else:
            assert status not in (401, 403) and status < 500, f"{method} {url} {form}: {status}"
    for answer in _ask(tracer, method, path):
        assert UNRELATED not in answer.body and "Qwertyunrelated" not in answer.body


def test_a_tracer_traces_across_every_site_with_a_reason_and_the_page_says_so(
    tracer: Caller, store: Store
) -> None:
    result = json.loads(tracer.get(f"/api/v1/people/{SHARED}/trace?window_min=1440&reason=x"))
    assert result["sites"] is None
    assert [visit["site_id"] for visit in result["visits"]] == [SITE_A, SITE_B]
    # The contacts as a manager's trace shows them: the point of tracing is to reach them.
    people = {person["subject_id"]: person["subject_name"] for person in result["people"]}
    assert people == {A_PERSON: A_NAME, B_PERSON: B_NAME}

    page = tracer.get(f"/tracing?q={tracer.handle()}&window=1440")
    covered = Translator("vi")("tracing.covered_all")  # the default language's words
    assert f'<p class="muted" id="tracing-covered">{covered}</p>' in page
    assert B_NAME in page and A_NAME in page
    assert "/tracing/export" not in page  # downloads are a manager's
    assert 'href="/entries"' not in page and 'href="/audit"' not in page  # the menu: tracing

    traces = AuditLog(store.engine).rows(action="trace")
    rows = [row for row in traces if row.actor == actor(tracer, "tracer")]
    assert [row.details.get("reason") for row in rows] == [REASON, "x"]  # newest first
    assert all(row.subject == SHARED and row.site_id == "" for row in rows)  # two sites
    assert set(rows[0].details["contacts"]) == {A_PERSON, B_PERSON}


def test_without_a_reason_a_tracer_traces_nothing(tracer: Caller, store: Store) -> None:
    assert tracer.status("GET", f"/api/v1/people/{SHARED}/trace?reason=%20") == 400
    page = tracer.client.post(
        "/tracing/search", data={**tracer.form, "subject": SHARED}, headers=tracer.headers
    )
    if tracer.form:  # the page, by a session: asked again, nothing shown
        answer = tracer.client.get(page.headers["location"])
        assert answer.status_code == 400 and A_PERSON not in answer.text
    assert AuditLog(store.engine).rows(action="trace") == []


def test_a_tracer_of_site_a_traces_there_only(site_app: FastAPI, via: str, store: Store) -> None:
    asking = caller(site_app, TRACER_A, via)
    with asking.client:
        result = json.loads(asking.get(f"/api/v1/people/{SHARED}/trace?reason=x&window_min=99"))
        assert result["sites"] == [SITE_A]
        assert [person["subject_id"] for person in result["people"]] == [A_PERSON]
        page = asking.get(f"/tracing?q={asking.handle()}")
        assert 'id="tracing-covered"' in page and SITE_A in page and SITE_B not in page
    rows = AuditLog(store.engine).rows(action="trace")
    assert rows and all(row.site_id == SITE_A for row in rows)  # the hq manager's to read


def test_a_tracer_logs_in_to_the_tracing_page(site_app: FastAPI) -> None:
    with TestClient(site_app, follow_redirects=False) as browser:
        form = {"username": "tracer", "password": PASSWORD, "next": "/entries"}
        form["csrf_token"] = login_form_token(browser)
        assert browser.post("/login", data=form).headers["location"] == "/tracing"


# --- the technician: a verdict for every route ---------------------------------------------------

# What a technician may see: the fleet (the page, its live region, the gates' JSON, a gate's
# page) and its alerts, who it is and its own account.
TECHNICIAN_FLEET = {
    ("GET", "/"),
    ("GET", "/live/fleet"),
    ("GET", "/api/v1/devices"),
    ("GET", "/gates/{device_id}"),
    ("GET", "/live/gates/{device_id}"),
    ("GET", "/alerts"),
    ("GET", "/live/alerts"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/me"),
    ("GET", "/account"),
    ("POST", "/account/language"),
    ("POST", "/account/password"),
}
# What it may do to a gate (GateOperator: remote commands, preview, config, updates): each such
# route is named here when it lands. Never the door's release, which stays the manager's.
TECHNICIAN_ACTIONS: set[tuple[str, str]] = {
    ("POST", "/gates/{device_id}/command"),
    ("POST", "/gates/{device_id}/settings"),  # config push (issue 17)
    ("GET", "/gates/{device_id}/preview"),  # aim and focus (issue 17)
    ("POST", "/api/v1/gates/{device_id}/preview"),
    ("POST", "/api/v1/gates/{device_id}/preview/stop"),
    ("GET", "/api/v1/gates/{device_id}/preview"),
    ("GET", "/api/v1/gates/{device_id}/preview.jpg"),
    ("GET", "/updates"),  # updates from the dashboard (issue 17): its own sites' gates only
    ("POST", "/updates"),
}
TECHNICIAN_ROUTES = TECHNICIAN_FLEET | TECHNICIAN_ACTIONS
# Nobody's data may reach a technician: names and ID numbers of both sites, masked or not (a
# masked name keeps initials, so the names are looked for whole).
PERSONAL_MARKERS = (A_PERSON, B_PERSON, SHARED, "Alphaname", "Zyxbeta", "Bravoname")


def technician_verdict(method: str, path: str, via: str = "session") -> str:
    """The answer a technician gets: "allowed", "403", or "public" (as for a tracer)."""
    if via == "token" and (method, path) in SESSION_ONLY:
        return "403"
    if (method, path) in TECHNICIAN_ROUTES:
        return "allowed"
    if GUARDS[(method, path)] is not None or (method, path) in REFUSED_PUBLIC:
        return "403"
    return "public"


def test_the_routes_let_a_technician_in_exactly_where_the_verdicts_say() -> None:
    assert set(GUARDS) >= TECHNICIAN_ROUTES
    let_in = {route for route, guard in GUARDS.items() if guard is not None and guard.technician}
    assert let_in == TECHNICIAN_ROUTES
    # A gate action admits a manager (and an admin), never a viewer: require_role(MANAGER, ...).
    assert all(GUARDS[route].min_role == Role.MANAGER for route in TECHNICIAN_ACTIONS)
    refused = ("/entries", "/api/v1/entries", "/occupancy", "/tracing", "/audit", "/export")
    assert all(technician_verdict("GET", path) == "403" for path in refused)
    assert technician_verdict("POST", "/gates/{device_id}/release") == "403"  # the manager's


TECHNICIANS = ["technician", TECHNICIAN_A]


@pytest.fixture(params=TECHNICIANS)
def technician(site_app: FastAPI, via: str, request: pytest.FixtureRequest) -> Iterator[Caller]:
    """A technician of every site, and one of site A."""
    asking = caller(site_app, str(request.param), via)
    with asking.client:
        yield asking


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=lambda v: str(v))
@pytest.mark.parametrize(
    ("store_url", "via", "technician"),
    [
        *[(b, v, t) for b, v in BY_SESSION_ON_POSTGRES if b == "sqlite" for t in TECHNICIANS],
        ("postgresql", "session", TECHNICIAN_A),  # the one whose sites are in the WHERE
    ],
    indirect=True,
)
def test_a_technician_gets_the_expected_verdict_on_every_route(
    technician: Caller, via: str, releaser: Releaser, method: str, path: str
) -> None:
    verdict = technician_verdict(method, path, via)
    if path in NOT_POSTED or (verdict == "public" and path != "/metrics"):
        return
    for url, form in _requests(method, path):
        if "{handle}" in url:
            continue  # a technician gets no handle: /tracing/search is refused it
        status = technician.status(method, url, form)
        if verdict == "403":
            assert status == 403, f"{method} {url} {form}: {status}"
        else:
            assert status not in (401, 403) and status < 500, f"{method} {url} {form}: {status}"
    only_a = technician.name == TECHNICIAN_A
    for url, form in _requests(method, path):
        if "{handle}" in url:
            continue
        body = technician.get(url) if form is None else technician.post(url, form)
        shown = [marker for marker in PERSONAL_MARKERS if marker in body]
        assert shown == [], f"{method} {url} shows {shown}"
        if only_a:
            leaked = Asked(f"{url} {form}", body).leaked()
            assert leaked == [], f"{method} {url} shows site B's {leaked}"
    assert releaser.calls == []  # never the door


@pytest.mark.parametrize(
    ("method", "path"), sorted(TECHNICIAN_FLEET - {("POST", "/account/language")})
)
def test_a_technician_sees_the_gates_of_its_sites(
    site_app: FastAPI, via: str, method: str, path: str
) -> None:
    if method != "GET" or path in ("/account", "/api/v1/me"):
        return
    for name, expected in (("technician", {GATE_A, GATE_B}), (TECHNICIAN_A, {GATE_A})):
        asking = caller(site_app, name, via)
        with asking.client:
            if path in ("/gates/{device_id}", "/live/gates/{device_id}"):
                # A gate's page and its live region: another site's gate is not found.
                found = {
                    gate
                    for gate in (GATE_A, GATE_B)
                    if asking.status(method, path.format(device_id=gate)) == 200
                }
                assert found == expected, name
                continue
            body = asking.get(path.format(**PATH_VALUES))
            assert {gate for gate in (GATE_A, GATE_B) if gate in body} == expected, (name, path)


def test_a_technician_logs_in_to_the_fleet_and_its_menu_holds_no_personal_page(
    site_app: FastAPI,
) -> None:
    with TestClient(site_app, follow_redirects=False) as browser:
        form = {"username": "technician", "password": PASSWORD, "next": "/entries"}
        form["csrf_token"] = login_form_token(browser)
        assert browser.post("/login", data=form).headers["location"] == "/"
        page = browser.get("/").text
        assert 'href="/alerts"' in page and f'href="/gates/{GATE_A}"' in page
        for hidden in ("/entries", "/tracing", "/occupancy", "/export", "/audit"):
            assert f'href="{hidden}"' not in page, hidden
        assert "/release" not in page  # no door button
        assert "/acknowledge" not in browser.get("/alerts").text  # acknowledging: a manager's


# --- the audit log per site ----------------------------------------------------------------------


def _audit_sites(asking: Caller) -> list[str]:
    return [row["site_id"] for row in json.loads(asking.get("/api/v1/audit?limit=1000"))]


def test_a_manager_reads_the_audit_rows_of_their_sites_only(
    site_app: FastAPI, via: str, store: Store, releaser: Releaser
) -> None:
    audit = AuditLog(store.engine)
    audit.record("cli:root", "account", MANAGER_A, {"change": "user add"})  # the admin's
    admin, manager = caller(site_app, "admin", via), caller(site_app, MANAGER_A, via)
    every_site = caller(site_app, "manager", via)  # a manager of every site
    others = [caller(site_app, name, via) for name in ("viewer", "tracer")]
    with admin.client, manager.client, every_site.client:
        admin.get(f"/api/v1/entries?unmask=true&site={SITE_B}")  # B's unmask row
        admin.get(f"/api/v1/entries?unmask=true&site={SITE_A}")  # A's
        admin.get("/api/v1/entries?unmask=true")  # both sites: the admin's alone
        admin.get(f"/api/v1/entries/export?site={SITE_A}")  # an export of A's: A's
        manager.get("/api/v1/entries?unmask=true")  # A's
        assert manager.status("POST", f"/gates/{GATE_A}/release") == 200  # A's door
        rows = json.loads(manager.get("/api/v1/audit?limit=1000"))
        page = manager.get("/audit")

        assert {row["site_id"] for row in rows} == {SITE_A}
        assert sorted(row["action"] for row in rows) == ["door", "export", "unmask", "unmask"]
        unmasked_by = {row["actor"] for row in rows if row["action"] == "unmask"}
        assert unmasked_by == {actor(admin, "admin"), actor(manager, MANAGER_A)}
        assert 'id="audit-table"' in page and f'data-site="{SITE_A}"' in page
        assert SITE_B not in page and B_PERSON not in page and "cli:root" not in page

        assert {row.site_id for row in audit.rows(limit=1000)} == {SITE_A, SITE_B, ""}
        assert set(_audit_sites(admin)) == {SITE_A, SITE_B, ""}
        assert set(_audit_sites(every_site)) == {SITE_A, SITE_B}  # never a row of no site
    for asking in others:
        with asking.client:
            assert asking.status("GET", "/api/v1/audit") == 403
            assert asking.status("GET", "/audit") == 403


def actor(asking: Caller, name: str) -> str:
    """How the audit log names a caller: the user, or its token."""
    return f"token:{name}-script" if asking.headers else name
