"""Login, roles, sessions, tokens: every route that is not deliberately public needs a role,
answers 401 (API) or a redirect to the login form (pages) without credentials, and 403 to a
lower role. The routes are read from the app itself, so a new one cannot be forgotten."""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.passwords import PasswordHasher
from server.accounts.users import Account, Role
from server.dashboard.auth import FleetViewer, GateOperator
from server.dashboard.reports.access import NotAllowed, may_operate_gates
from server.dashboard.state import SESSION_COOKIE
from tests.support.web import PASSWORD, MovableClock, app_routes, bearer, log_in, login_form_token

# Deliberately reachable without logging in: nothing personal behind them.
PUBLIC_ROUTES = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/language"),  # the login page's language switch (a cookie, nothing else)
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    # The pass holder's page: the same static files for everyone; the pass is in the fragment.
    ("GET", "/pass"),
    ("GET", "/pass/"),
    ("GET", "/pass/{name}"),
    # The self check-in page a location's poster opens (server/checkin/): a form, and a
    # check-in recorded; its token names the location, its limits are per address and phone.
    ("GET", "/c/{token}"),
    ("POST", "/c/{token}"),
    # "Not me": deletes the phone's own remember-me cookie, whatever the token (issue 18).
    ("POST", "/c/{token}/forget"),
    # A scraper's, protected by a metrics token: 401, never the login page
    # (tests/server/metrics/test_routes.py).
    ("GET", "/metrics"),
    # The signed release bundles, for the gates' updaters, which fetch without credentials: the
    # bundle's Ed25519 signature is what a gate trusts (server/dashboard/rollout/bundles.py).
    ("GET", "/releases/{name}"),
}
PATH_VALUES = {"subject_id": "079190000001", "lang": "en", "device_id": "gate-1", "alert_id": "1"}
PATH_VALUES["location_id"] = "loc-aaaaaaaaaa"  # a self check-in location (issue 18)


def min_role(dependant: Any) -> Role | None:
    """The role a route's dependencies demand (require_role marks its check with min_role)."""
    pending: list[Any] = [dependant] if dependant is not None else []
    while pending:
        dependant = pending.pop()
        role = getattr(dependant.call, "min_role", None)
        if role is not None:
            return Role(role)
        pending.extend(dependant.dependencies)
    return None


def _routes() -> list[tuple[str, str, Role | None]]:
    from server.dashboard.app import create_web_app
    from server.dashboard.settings import WebSettings
    from server.store.database import Store

    app = create_web_app(Store("sqlite://"), WebSettings())
    return [(method, path, min_role(dependant)) for method, path, dependant in app_routes(app)]


ROUTES = _routes()
PROTECTED = [(m, p, r) for m, p, r in ROUTES if (m, p) not in PUBLIC_ROUTES]


def _url(path: str) -> str:
    return path.format(**PATH_VALUES)


def test_the_route_list_is_not_empty_and_covers_the_api() -> None:
    paths = {path for _, path, _ in PROTECTED}
    assert {
        "/api/v1/entries",
        "/api/v1/entries/export",
        "/api/v1/people/{subject_id}/trace",
    } <= paths
    assert {"/", "/entries", "/occupancy"} <= paths


@pytest.mark.parametrize(("method", "path", "role"), PROTECTED, ids=lambda v: str(v))
def test_every_protected_route_names_its_role(method: str, path: str, role: Role | None) -> None:
    assert role is not None, f"{method} {path} has no require_role(...) dependency"


@pytest.mark.parametrize(("method", "path", "role"), PROTECTED, ids=lambda v: str(v))
def test_without_credentials_the_api_answers_401_and_pages_redirect_to_login(
    client: TestClient, method: str, path: str, role: Role | None
) -> None:
    data = {"csrf_token": login_form_token(client)} if method != "GET" else None
    answer = client.request(method, _url(path), data=data)
    if path.startswith("/api/"):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    else:
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(("method", "path", "role"), PROTECTED, ids=lambda v: str(v))
def test_a_wrong_bearer_token_is_401(
    client: TestClient, method: str, path: str, role: Role | None
) -> None:
    for header in ("Bearer gst_not-a-real-token", "Basic dmlld2VyOng=", "Bearer "):
        answer = client.request(method, _url(path), headers={"Authorization": header})
        assert answer.status_code == 401, header


LOWER_ROLE_CASES = [(m, p, r) for m, p, r in PROTECTED if r is not None and r > Role.VIEWER]


@pytest.mark.parametrize(("method", "path", "role"), LOWER_ROLE_CASES, ids=lambda v: str(v))
def test_a_role_below_the_route_s_gets_403(
    app: FastAPI, client: TestClient, method: str, path: str, role: Role
) -> None:
    lower = Role(role - 1)
    by_token = client.request(method, _url(path), headers=bearer(app, lower))
    assert by_token.status_code == 403
    csrf = log_in(client, lower.label)
    by_session = client.request(method, _url(path), data={"csrf_token": csrf})
    assert by_session.status_code == 403


def test_personal_data_endpoints_need_more_than_a_viewer_to_unmask_or_trace(
    app: FastAPI, client: TestClient
) -> None:
    viewer = bearer(app, Role.VIEWER)
    for url in (
        "/api/v1/entries?unmask=true",
        "/api/v1/entries/export?unmask=true",
        "/api/v1/people/079190000001/trace",
        "/api/v1/people/079190000001/trace/export",
        "/api/v1/audit",
    ):
        assert client.get(url, headers=viewer).status_code == 403, url
    assert client.get("/api/v1/entries", headers=viewer).status_code == 200


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.TECHNICIAN, True),
        (Role.MANAGER, True),
        (Role.ADMIN, True),
        (Role.VIEWER, False),
        (Role.TRACER, False),
        (Role.METRICS, False),
    ],
)
def test_a_gate_action_is_a_technician_s_a_manager_s_or_an_admin_s(
    role: Role, allowed: bool
) -> None:
    """GateOperator, the gate actions' dependency (remote commands, preview, config, updates),
    and may_operate_gates, the pages' buttons, agree."""
    check = get_args(GateOperator)[1].dependency
    user = Account("someone", role, None, via="token")
    if allowed:
        assert check(user) is user
    else:
        with pytest.raises(NotAllowed):
            check(user)
    assert may_operate_gates(user) is allowed


def test_the_fleet_is_every_role_s_but_the_tracer_s_and_the_metrics_token_s() -> None:
    check = get_args(FleetViewer)[1].dependency
    for role in Role:
        user = Account("someone", role, None, via="token")
        if role in (Role.TRACER, Role.METRICS):
            with pytest.raises(NotAllowed):
                check(user)
        else:
            assert check(user) is user, role


def test_a_page_redirect_keeps_where_the_user_was_going(client: TestClient) -> None:
    answer = client.get("/entries?site=hq")
    assert answer.headers["location"] == "/login?next=%2Fentries%3Fsite%3Dhq"
    csrf = login_form_token(client)
    form = {
        "username": "viewer",
        "password": PASSWORD,
        "csrf_token": csrf,
        "next": "/entries?site=hq",
    }
    assert client.post("/login", data=form).headers["location"] == "/entries?site=hq"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_login_never_redirects_off_site(client: TestClient, target: str) -> None:
    csrf = login_form_token(client)
    form = {"username": "viewer", "password": PASSWORD, "csrf_token": csrf, "next": target}
    assert client.post("/login", data=form).headers["location"] == "/"


def test_a_wrong_password_is_refused_and_sets_no_session(client: TestClient) -> None:
    csrf = login_form_token(client)
    form = {"username": "manager", "password": "wrong password", "csrf_token": csrf}
    answer = client.post("/login", data=form)
    assert answer.status_code == 401
    assert SESSION_COOKIE not in answer.cookies
    assert client.get("/api/v1/me").status_code == 401


def test_the_session_cookie_is_httponly_and_samesite(client: TestClient) -> None:
    csrf = login_form_token(client)
    form = {"username": "viewer", "password": PASSWORD, "csrf_token": csrf}
    cookie = client.post("/login", data=form).headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert re.search(r"SameSite=strict", cookie, re.IGNORECASE)
    assert "Secure" not in cookie  # settings.secure_cookies is off in the tests


def test_each_login_gets_a_new_session_id(client: TestClient) -> None:
    csrf = log_in(client, "viewer")
    first = client.cookies.get(SESSION_COOKIE)
    form = {"username": "manager", "password": PASSWORD, "csrf_token": csrf}
    assert client.post("/login", data=form).status_code == 303  # switching user
    assert client.cookies.get(SESSION_COOKIE) != first
    assert client.get("/api/v1/me").json()["name"] == "manager"
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, str(first))
    assert client.get("/api/v1/me").status_code == 401  # the old one ended at the new login


def test_logout_ends_the_session_on_the_server(client: TestClient) -> None:
    csrf = log_in(client, "manager")
    secret = client.cookies.get(SESSION_COOKIE)
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, str(secret))  # a copy of the cookie is worth nothing
    assert client.get("/api/v1/me").status_code == 401


def test_an_idle_session_expires(client: TestClient, clock: MovableClock) -> None:
    log_in(client, "viewer")
    clock.advance(500)  # idle limit in these tests: 600 s
    assert client.get("/api/v1/me").status_code == 200  # a use keeps the session alive
    clock.advance(599)
    assert client.get("/api/v1/me").status_code == 200
    clock.advance(601)
    assert client.get("/api/v1/me").status_code == 401
    page = client.get("/entries")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")


def test_a_page_after_idle_expiry_says_the_session_expired(
    client: TestClient, clock: MovableClock
) -> None:
    log_in(client, "viewer")
    clock.advance(601)
    page = client.get("/occupancy")
    assert page.headers["location"].endswith("&expired=1")
    assert SESSION_COOKIE not in client.cookies  # the dead cookie is cleared
    assert not client.get("/entries").headers["location"].endswith("&expired=1")


def test_a_session_ends_after_its_maximum_age_even_when_used(
    client: TestClient, clock: MovableClock
) -> None:
    log_in(client, "viewer")
    for _ in range(12 * 3600 // 590):  # every 590 s (< the idle limit) for 12 hours
        clock.advance(590)
        assert client.get("/api/v1/me").status_code == 200
    clock.advance(590)
    assert client.get("/api/v1/me").status_code == 401


def test_an_api_token_works_without_cookies_and_csrf(app: FastAPI, client: TestClient) -> None:
    headers = bearer(app, Role.MANAGER)
    me = client.get("/api/v1/me", headers=headers)
    assert me.json() == {
        "name": "token:script-manager",
        "role": "manager",
        "language": None,
        "via": "token",
        "sites": None,  # every site
    }
    assert client.get("/api/v1/people/079190000001/trace", headers=headers).status_code == 200


def test_a_revoked_token_is_refused(app: FastAPI, client: TestClient) -> None:
    headers = bearer(app, Role.ADMIN)
    assert app.state.web.accounts.revoke_token("script-admin")
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_tokens_and_sessions_are_stored_only_as_digests(app: FastAPI, client: TestClient) -> None:
    token = bearer(app, Role.VIEWER)["Authorization"].removeprefix("Bearer ")
    log_in(client, "viewer")
    secret = str(client.cookies.get(SESSION_COOKIE))
    with app.state.web.store.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_tokens"))
        dump += "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM web_sessions"))
        dump += "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM users"))
    assert token not in dump
    assert secret not in dump
    assert PASSWORD not in dump


def test_passwords_are_hashed_with_salted_scrypt() -> None:
    hasher = PasswordHasher(n=2**14)
    first, second = hasher.hash("hunter2 hunter2"), hasher.hash("hunter2 hunter2")
    assert first.startswith("scrypt$16384$8$3$")
    assert first != second  # a salt each
    assert hasher.verify("hunter2 hunter2", first)
    assert not hasher.verify("hunter2 hunter3", first)
    assert not hasher.verify("hunter2 hunter2", "md5$x")


def test_a_hash_made_with_other_parameters_still_verifies() -> None:
    old = PasswordHasher(n=2**12).hash("a long passphrase")
    assert PasswordHasher().verify("a long passphrase", old)


def test_the_production_cost_is_memory_hard() -> None:
    hasher = PasswordHasher()
    assert 128 * hasher.n * hasher.r >= 32 * 2**20  # bytes of memory per hash


def test_a_page_s_background_refresh_does_not_keep_the_session_alive(
    client: TestClient, clock: MovableClock
) -> None:
    log_in(client, "viewer")
    live = {"X-Gatescan-Live": "1"}
    for _ in range(3):
        clock.advance(150)
        assert client.get("/api/v1/me", headers=live).status_code == 200
    clock.advance(200)  # 650 s since the person last did anything; the idle limit is 600 s
    assert client.get("/api/v1/me", headers=live).status_code == 401
