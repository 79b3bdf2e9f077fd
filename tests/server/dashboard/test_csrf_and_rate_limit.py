"""Every state-changing request with a cookie needs the CSRF token; logins are rate-limited."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.users import Role
from server.dashboard.csrf import LOGIN_CSRF_COOKIE
from server.dashboard.state import SESSION_COOKIE
from tests.support.web import PASSWORD, MovableClock, app_routes, bearer, log_in, login_form_token

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _state_changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in app_routes(app) if method in STATE_CHANGING]


def test_the_app_has_forms_to_protect(app: FastAPI) -> None:
    assert ("POST", "/login") in _state_changing_routes(app)
    assert ("POST", "/logout") in _state_changing_routes(app)


def test_every_state_changing_route_refuses_a_session_request_without_the_token(
    app: FastAPI, client: TestClient
) -> None:
    csrf = log_in(client, "admin")
    for method, path in _state_changing_routes(app):
        url = path.format(
            subject_id="079190000001",
            lang="en",
            device_id="gate-1",
            alert_id="1",
            location_id="loc-aaaaaaaaaa",  # the locations page's (server/dashboard/locations/)
            token="loc-aaaaaaaaaa.AAAAAAAAAAAAAAAAAAAAAA",  # the self check-in page's (a 404)
        )
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf + "x"}):
            answer = client.request(method, url, data=data)
            assert answer.status_code == 403, (method, path, data)
        wrong_header = client.request(method, url, headers={"X-CSRF-Token": "forged"})
        assert wrong_header.status_code == 403, (method, path)
    assert client.get("/api/v1/me").status_code == 200  # logout without a token did nothing


def test_logout_with_the_token_works(client: TestClient) -> None:
    csrf = log_in(client, "viewer")
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_login_without_the_form_token_is_refused(client: TestClient) -> None:
    login_form_token(client)  # the cookie is set, but the form field is missing
    answer = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert answer.status_code == 403
    assert SESSION_COOKIE not in answer.cookies


def test_login_with_a_token_but_no_matching_cookie_is_refused(client: TestClient) -> None:
    token = login_form_token(client)
    client.cookies.delete(LOGIN_CSRF_COOKIE)  # another site can post the form, not the cookie
    form = {"username": "admin", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=form).status_code == 403


def test_bearer_requests_need_no_csrf_token_and_ignore_cookies(
    app: FastAPI, client: TestClient
) -> None:
    log_in(client, "admin")
    # The header alone decides: a wrong token fails even with an admin's session cookie.
    answer = client.get("/api/v1/me", headers={"Authorization": "Bearer gst_wrong"})
    assert answer.status_code == 401
    answer = client.get("/api/v1/me", headers=bearer(app, Role.VIEWER))
    assert answer.json()["role"] == "viewer"


def _try(client: TestClient, name: str, password: str) -> int:
    client.cookies.clear()  # a fresh browser each time
    form = {"username": name, "password": password, "csrf_token": login_form_token(client)}
    return client.post("/login", data=form).status_code


def test_login_is_rate_limited_per_user_name(client: TestClient, clock: MovableClock) -> None:
    for _ in range(3):  # the limit in these tests
        assert _try(client, "manager", "wrong password") == 401
    answer_status = _try(client, "manager", PASSWORD)
    assert answer_status == 429  # even the right password waits
    clock.advance(15 * 60 + 1)
    assert _try(client, "manager", PASSWORD) == 303


def test_the_rate_limited_answer_says_when_to_retry(client: TestClient) -> None:
    for _ in range(3):
        _try(client, "viewer", "nope nope")
    form = {"username": "viewer", "password": "x", "csrf_token": login_form_token(client)}
    answer = client.post("/login", data=form)
    assert answer.status_code == 429
    assert 0 < int(answer.headers["retry-after"]) <= 15 * 60 + 1


def test_login_is_rate_limited_per_client_address(client: TestClient) -> None:
    for n in range(10):  # 10 per address in these tests, each a different name
        assert _try(client, f"nobody{n}", "wrong password") == 401
    assert _try(client, "admin", PASSWORD) == 429


def test_a_right_password_clears_the_name_s_failures(client: TestClient) -> None:
    for _ in range(2):
        assert _try(client, "manager", "wrong password") == 401
    assert _try(client, "manager", PASSWORD) == 303
    for _ in range(2):
        assert _try(client, "manager", "wrong password") == 401
    assert _try(client, "manager", PASSWORD) == 303


@pytest.mark.parametrize("name", ["viewer", "no-such-user"])
def test_unknown_names_and_wrong_passwords_look_the_same(client: TestClient, name: str) -> None:
    form = {"username": name, "password": "wrong password", "csrf_token": login_form_token(client)}
    answer = client.post("/login", data=form)
    assert answer.status_code == 401


def test_the_limiter_forgets_names_whose_failures_are_old() -> None:
    from server.dashboard.ratelimit import LoginRateLimiter

    now = [0.0]
    limiter = LoginRateLimiter(per_user=2, per_ip=10**9, window_s=60, clock=lambda: now[0])
    for n in range(10_001):
        limiter.failed(f"made-up-{n}", "198.51.100.7")
    now[0] += 61
    limiter.failed("one-more", "198.51.100.7")
    assert len(limiter) == 2  # the old names are gone; the address and the new name stay
