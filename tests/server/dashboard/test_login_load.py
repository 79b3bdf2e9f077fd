"""Logins under load and in the log: at most a few scrypt hashes at once (32 MiB each), a queue
of logins waiting without a worker thread each, then 503 with Retry-After; and a failed login's
log line never holds what was typed in the name field (it may be a password typed in the wrong
place)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.passwords import HashingBusy, LimitedHasher
from server.accounts.users import Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.store.database import Store
from tests.support.waiting import wait_until
from tests.support.web import FAST_HASHER, PASSWORD, MovableClock, login_form_token

T = TypeVar("T")
Answer = tuple[int, str | None, str]  # status, Retry-After, body


class HeldHasher:
    """The real (fast) scrypt, counting the hashes running at once; each waits for `release`
    first, so a test decides when the hashes end instead of timing them."""

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._held(lambda: FAST_HASHER.hash(password))

    def verify(self, password: str, encoded: str) -> bool:
        return self._held(lambda: FAST_HASHER.verify(password, encoded))

    def _held(self, work: Callable[[], T]) -> T:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            assert self.release.wait(30), "the test never released the hashes"
            return work()
        finally:
            with self._lock:
                self.running -= 1


def loaded_app(store: Store, clock: MovableClock, hasher: HeldHasher, **limits: float) -> FastAPI:
    settings = WebSettings(login_failures_per_user=100, login_failures_per_ip=100, **limits)
    Accounts(store.engine, hasher=FAST_HASHER).add_user("manager", Role.MANAGER, PASSWORD)
    return create_web_app(store, settings, clock=clock, monotonic=clock.monotonic, hasher=hasher)


def logins_at_once(app: FastAPI, count: int) -> tuple[list[threading.Thread], list[Answer]]:
    """`count` browsers post the right password together; their answers, as they come."""
    answers: list[Answer] = []
    ready = threading.Barrier(count)

    def attempt() -> None:
        with TestClient(app, follow_redirects=False) as browser:
            form = {"username": "manager", "password": PASSWORD}
            form["csrf_token"] = login_form_token(browser)
            ready.wait()
            answer = browser.post("/login", data=form)
            answers.append((answer.status_code, answer.headers.get("retry-after"), answer.text))

    threads = [threading.Thread(target=attempt) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, answers


def test_a_login_storm_runs_at_most_two_hashes_queues_a_few_and_refuses_the_rest(
    store: Store, clock: MovableClock
) -> None:
    hasher = HeldHasher()
    app = loaded_app(store, clock, hasher, login_checks_waiting=3, login_check_wait_s=30)

    threads, answers = logins_at_once(app, 8)
    # 2 hashing (held), 3 waiting for a turn, so the other 3 are refused without waiting.
    wait_until(lambda: len(answers) == 3 and hasher.running == 2, 20, "3 refusals, 2 hashes")
    refused = list(answers)
    hasher.release.set()
    for thread in threads:
        thread.join(timeout=30)

    assert hasher.most_at_once == 2  # the default cap: 64 MiB of scrypt at most
    assert [(status, retry) for status, retry, _ in refused] == [(503, "30")] * 3
    assert all("Máy chủ đang bận" in text for _, _, text in refused)  # said, in Vietnamese
    assert sorted(status for status, _, _ in answers) == [303] * 5 + [503] * 3
    assert len(app.state.web.limiter) == 0  # a refused login counts as no attempt at all


def test_a_login_that_waits_too_long_for_a_turn_gets_503(store: Store, clock: MovableClock) -> None:
    hasher = HeldHasher()
    app = loaded_app(store, clock, hasher, password_hashes_at_once=1, login_check_wait_s=0.2)

    threads, answers = logins_at_once(app, 3)
    # One hash is held past the others' 0.2 s wait: they queued, then gave up.
    wait_until(lambda: len(answers) == 2, 20, "the two waiting logins to give up")
    hasher.release.set()
    for thread in threads:
        thread.join(timeout=30)

    assert hasher.most_at_once == 1
    assert sorted((status, retry) for status, retry, _ in answers) == [
        (303, None),
        (503, "1"),
        (503, "1"),
    ]


def test_the_limited_hasher_counts_hash_and_verify_alike() -> None:
    hasher = HeldHasher()
    limited = LimitedHasher(hasher, at_once=1, waiting=0, wait_s=30)
    encoded = FAST_HASHER.hash(PASSWORD)
    worker = threading.Thread(target=limited.hash, args=(PASSWORD,))
    worker.start()
    wait_until(lambda: hasher.running == 1, 10, "the first hash to start")

    with pytest.raises(HashingBusy):  # no turn free, no place to wait: refused at once
        limited.verify(PASSWORD, encoded)

    hasher.release.set()
    worker.join(timeout=30)
    assert limited.verify(PASSWORD, encoded)


# --- the failed-login log line -----------------------------------------------------------------


def _try(browser: TestClient, name: str, password: str) -> int:
    form = {"username": name, "password": password, "csrf_token": login_form_token(browser)}
    return browser.post("/login", data=form).status_code


def test_a_failed_login_never_logs_the_typed_name(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    typed_password = "Hunter2-mật-khẩu"  # typed in the name field by mistake
    with caplog.at_level(logging.INFO, logger="gatescan.web.auth"):
        assert _try(client, typed_password, "anything") == 401
        assert _try(client, f" {typed_password.upper()} ", "anything") == 401  # the same name
        assert _try(client, "someone-else", "anything") == 401
        assert _try(client, "manager", "wrong password") == 401

    lines = [r.getMessage() for r in caplog.records if "failed login" in r.getMessage()]
    assert len(lines) == 4
    assert not any(typed_password.lower() in line.lower() for line in lines)
    digests = [m.group(1) for line in lines if (m := re.search(r"unknown user #(\w{8}) ", line))]
    assert len(digests) == 3, lines
    assert digests[0] == digests[1] != digests[2]  # one name, one digest: tries still add up
    assert "user 'manager'" in lines[3]  # a real user's name is a name, not a secret


def test_a_rate_limited_login_does_not_log_the_typed_name_either(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    typed_password = "Hunter2-mật-khẩu"
    with caplog.at_level(logging.INFO, logger="gatescan.web.auth"):
        answers = [_try(client, typed_password, "anything") for _ in range(4)]  # limit: 3
    assert answers == [401, 401, 401, 429]
    assert "rate-limited for unknown user #" in caplog.text
    assert typed_password.lower() not in caplog.text.lower()


def test_the_log_digest_cannot_be_checked_without_the_process_s_secret(
    store: Store, settings: WebSettings
) -> None:
    from server.dashboard.auth import login_name_for_log

    first = create_web_app(store, settings, hasher=FAST_HASHER).state.web
    second = create_web_app(store, settings, hasher=FAST_HASHER).state.web
    assert login_name_for_log(first, "guess") == login_name_for_log(first, "GUESS")
    assert login_name_for_log(first, "guess") != login_name_for_log(second, "guess")
