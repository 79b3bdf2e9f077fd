"""The login throttle's policy on a clock the tests move: a name's tries wait longer after each
failure, up to a cap, and are never refused for longer; an address is limited in a window."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.dashboard.login.throttle import LoginThrottle
from tests.support.web import PASSWORD, MovableClock, login_form_token

HERE, THERE = "192.0.2.1", "192.0.2.2"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, *, per_ip: int = 1000) -> LoginThrottle:
    """The production policy: 5 free failures, then 1 s doubling up to 30 s; 15 minutes."""
    return LoginThrottle(
        free_tries=5, first_delay_s=1, max_delay_s=30, per_ip=per_ip, window_s=900, clock=clock
    )


def test_each_failure_after_the_free_ones_doubles_the_wait_up_to_the_cap() -> None:
    clock = Clock()
    names = throttle(clock)
    waits = []
    for _ in range(12):  # a guesser trying the moment it may, always wrong
        wait = names.begin("manager", HERE)
        if wait:
            waits.append(wait)
            clock.now += wait
            assert names.begin("manager", HERE) == 0
    assert waits == [1, 2, 4, 8, 16, 30, 30]


def test_a_guesser_gets_about_one_try_in_30_s_at_a_name() -> None:
    clock = Clock()
    names = throttle(clock)
    tries = 0
    while clock.now < 3600:
        wait = names.begin("manager", HERE)
        if wait:
            clock.now += wait
        else:
            tries += 1
    # 5 free at once, 5 more as the wait grows to 30 s (at 1, 3, 7, 15 and 31 s), then one
    # every 30 s (61, 91, ... 3571 s).
    assert tries == 5 + 5 + 118


def test_the_wait_runs_from_when_the_failure_was_answered() -> None:
    clock = Clock()
    names = throttle(clock)
    for _ in range(5):
        names.begin("manager", HERE)
    clock.now = 0.5  # scrypt took half a second to say the 5th was wrong
    names.failed("manager", HERE)
    clock.now = 1.2
    assert names.begin("manager", HERE) == pytest.approx(0.3)


def test_attempts_still_being_checked_count_and_the_right_password_clears_them() -> None:
    names = throttle(Clock())
    assert [names.begin("manager", HERE) for _ in range(5)] == [0] * 5
    assert names.begin("manager", THERE) == 1  # the 6th, before any answer is known
    names.succeeded("manager", HERE)
    assert names.begin("manager", THERE) == 0


def test_an_attempt_never_checked_is_taken_back() -> None:
    names = throttle(Clock())
    for _ in range(5):
        names.begin("manager", HERE)
    names.withdrawn("manager", HERE)  # the server was too busy to check it
    assert names.begin("manager", HERE) == 0
    assert len(names) == 2  # one name, one address


def test_a_name_s_failures_are_forgotten_after_a_quiet_window() -> None:
    clock = Clock()
    names = throttle(clock)
    for _ in range(5):
        names.begin("manager", HERE)
    assert names.begin("manager", HERE) == 1
    clock.now += 900
    assert names.begin("manager", HERE) == 0  # counted again from the start
    assert names.begin("manager", HERE) == 0


def test_an_address_has_20_failures_in_15_minutes_whatever_the_names() -> None:
    clock = Clock()
    addresses = throttle(clock, per_ip=20)
    for n in range(20):
        assert addresses.begin(f"guess-{n}", HERE) == 0
        clock.now += 10
    assert addresses.begin("manager", HERE) == 900 - 200  # until the first one is 15 min old
    assert addresses.begin("manager", THERE) == 0  # another address is not held up
    clock.now += 700
    assert addresses.begin("guess-20", HERE) == 0


def test_a_name_counts_however_it_is_written() -> None:
    names = throttle(Clock())
    for variant in ("manager", " Manager", "MANAGER", "ｍａｎａｇｅｒ", "manager\t"):
        assert names.begin(variant, HERE) == 0
    assert names.begin("manager", HERE) == 1


def test_the_right_password_logs_in_once_the_wait_is_over(
    app: FastAPI, client: TestClient, clock: MovableClock
) -> None:
    guesser = TestClient(app, follow_redirects=False, client=("203.0.113.9", 50000))
    for _ in range(3):  # the free tries in these tests
        assert attempt(guesser, "wrong password") == (401, None)
    assert attempt(client, PASSWORD) == (429, "1")
    clock.advance(1)
    for delay in (2, 4, 8, 16, 30, 30, 30):  # a guesser keeps on, each time it may
        assert attempt(guesser, "wrong password") == (401, None)
        assert attempt(client, PASSWORD) == (429, str(delay))  # the real user's longest wait
        clock.advance(delay)
    assert attempt(client, PASSWORD) == (303, None)
    assert attempt(client, "wrong password") == (401, None)  # the name starts afresh


def attempt(browser: TestClient, password: str, name: str = "manager") -> tuple[int, str | None]:
    browser.cookies.clear()
    form = {"username": name, "password": password, "csrf_token": login_form_token(browser)}
    answer = browser.post("/login", data=form)
    return answer.status_code, answer.headers.get("retry-after")


def test_the_login_page_says_how_long_to_wait(client: TestClient) -> None:
    def refused(name: str) -> str:
        client.cookies.clear()
        form = {"username": name, "password": "wrong", "csrf_token": login_form_token(client)}
        answer = client.post("/login", data=form)
        assert answer.status_code == 429
        return answer.text

    for _ in range(3):
        attempt(client, "wrong password")
    assert "Vui lòng thử lại sau 1 giây." in refused("manager")  # a name's wait: seconds
    for n in range(7):  # 10 failures per address in these tests
        assert attempt(client, "wrong password", name=f"guess-{n}")[0] == 401
    assert "Vui lòng thử lại sau 15 phút." in refused("someone")  # an address's: minutes
