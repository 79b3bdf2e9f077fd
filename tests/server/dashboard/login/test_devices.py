"""A browser that logged in as a user before has turns at that name of its own: a guesser who
keeps the name's turns busy cannot keep the real user out."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.users import Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.login.devices import DEVICE_COOKIE, device_cookie, known_device
from server.dashboard.settings import WebSettings
from server.dashboard.state import SESSION_COOKIE
from server.store.database import Store
from tests.support.web import FAST_HASHER, PASSWORD, START, MovableClock, login_form_token

KEY, OTHER_KEY = b"k" * 32, b"o" * 32
LATER = START + timedelta(days=30)


def test_a_device_cookie_is_good_for_its_name_its_process_and_its_time_only() -> None:
    cookie = device_cookie(KEY, "manager", LATER)
    assert known_device(KEY, "manager", cookie, START) != ""
    assert known_device(KEY, " MANAGER ", cookie, START) != ""  # the name as the throttle reads it
    assert known_device(KEY, "admin", cookie, START) == ""
    assert known_device(OTHER_KEY, "manager", cookie, START) == ""  # another process, a restart
    assert known_device(KEY, "manager", cookie, LATER) == ""  # expired
    stamp, _, mac = cookie.partition(".")
    assert known_device(KEY, "manager", f"{int(stamp) + 1}.{mac}", START) == ""  # time moved
    for garbage in (None, "", ".", "x.y", f"{stamp}.", "-1." + mac):
        assert known_device(KEY, "manager", garbage, START) == ""


def log_in(browser: TestClient, password: str) -> tuple[int, str | None]:
    browser.cookies.delete(SESSION_COOKIE)  # logged out; the device cookie stays
    form = {"username": "manager", "password": password, "csrf_token": login_form_token(browser)}
    answer = browser.post("/login", data=form)
    return answer.status_code, answer.headers.get("retry-after")


def test_a_guesser_holding_the_name_s_turns_does_not_keep_a_known_browser_out(
    app: FastAPI, client: TestClient, clock: MovableClock
) -> None:
    assert log_in(client, PASSWORD) == (303, None)  # yesterday: this browser is now known
    assert client.cookies.get(DEVICE_COOKIE)
    clock.advance(86400)
    guesser = TestClient(app, follow_redirects=False, client=("203.0.113.9", 50000))
    for _ in range(3):  # the free tries in these tests
        assert log_in(guesser, "wrong password") == (401, None)
    assert log_in(guesser, "wrong password") == (429, "1")  # the name's turns: the guesser's
    new_browser = TestClient(app, follow_redirects=False, client=("198.51.100.2", 50000))
    assert log_in(new_browser, PASSWORD) == (429, "1")  # a browser never seen shares them

    assert log_in(client, PASSWORD) == (303, None)  # the known one has its own


def test_a_known_browser_s_own_wrong_tries_are_throttled_too(client: TestClient) -> None:
    assert log_in(client, PASSWORD) == (303, None)
    for _ in range(3):  # a stolen device cookie buys the same few tries, no more
        assert log_in(client, "wrong password") == (401, None)
    assert log_in(client, PASSWORD) == (429, "1")


def test_the_device_cookie_goes_to_the_login_form_only_and_never_to_script(
    store: Store, clock: MovableClock
) -> None:
    Accounts(store.engine, hasher=FAST_HASHER).add_user("manager", Role.MANAGER, PASSWORD)
    app = create_web_app(store, WebSettings(secure_cookies=True), clock=clock, hasher=FAST_HASHER)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        form = {"username": "manager", "password": PASSWORD}
        form["csrf_token"] = login_form_token(browser)
        answer = browser.post("/login", data=form)
    (cookie,) = [c for c in answer.headers.get_list("set-cookie") if c.startswith(DEVICE_COOKIE)]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes.keys()
    assert attributes["path"].strip() == "Path=/login"
    assert attributes["samesite"].strip().lower() == "samesite=strict"
