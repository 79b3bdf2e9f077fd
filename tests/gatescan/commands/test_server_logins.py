"""The login limits of `gatescan server` as clients meet them: the real process, real HTTP from
real sockets (a second loopback address, 127.0.0.2, plays a machine that is not the proxy), the
production scrypt and a real SQLite database. How a name's delay grows is tested with a moved
clock in tests/server/dashboard/login/test_throttle.py; here it runs once on the wall clock."""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from gatescan.testing.broker import LocalBroker
from server.accounts.users import Accounts, Role
from server.dashboard.csrf import LOGIN_CSRF_COOKIE
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.cli import gatescan_dashboard, run_gatescan

PASSWORD = "correct horse battery"
PROXY = "127.0.0.1"  # the test's own connections: the reverse proxy, when the option names it
ELSEWHERE = "127.0.0.2"  # another machine's connections, never a proxy
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None


class Browser:
    """One browser's login: the form (its CSRF cookie and field), then the post."""

    def __init__(self, port: int, source: str = PROXY) -> None:
        self._connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=120, source_address=(source, 0)
        )
        self._connection.request("GET", "/login")
        page = self._connection.getresponse()
        body = page.read().decode()
        found = _CSRF_INPUT.search(body)
        assert page.status == 200 and found, (page.status, body[:200])
        cookies = [c.split(";")[0] for c in page.headers.get_all("set-cookie") or []]
        self._cookie = next(c for c in cookies if c.startswith(f"{LOGIN_CSRF_COOKIE}="))
        self._token = found.group(1)

    def log_in(self, name: str, password: str, forwarded_for: str | None = None) -> Answer:
        self.post(name, password, forwarded_for)
        return self.answer()

    def post(self, name: str, password: str, forwarded_for: str | None = None) -> None:
        """Send the login (written to the socket when this returns)."""
        form = {"username": name, "password": password, "csrf_token": self._token}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": self._cookie}
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        self._connection.request("POST", "/login", urlencode(form), headers)

    def answer(self) -> Answer:
        answer = self._connection.getresponse()
        answer.read()
        self._connection.close()
        return Answer(answer.status, answer.getheader("retry-after"))


def log_in(
    port: int, name: str, password: str, forwarded_for: str | None = None, source: str = PROXY
) -> Answer:
    return Browser(port, source).log_in(name, password, forwarded_for)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "site.db"
    with Store(path) as store:
        Accounts(store.engine).add_user("manager", Role.MANAGER, PASSWORD)  # production scrypt
    return path


@pytest.fixture
def server_args(broker: LocalBroker) -> list[str]:
    return ["server", "--broker", broker.url, "--username", ""]


def audited_clients(db: Path) -> list[str]:
    with Store(db) as store:
        rows = AuditLog(store.engine).rows(action="login_failed")
    return [row.details["client"] for row in reversed(rows)]


def test_without_the_option_a_rotating_forwarded_for_is_ignored(
    tmp_path: Path, db: Path, server_args: list[str]
) -> None:
    with gatescan_dashboard(server_args, db, tmp_path) as port:
        answers = [
            log_in(port, f"guess-{n}", "wrong password", forwarded_for=f"203.0.113.{n}").status
            for n in range(30)  # a new name each time too: only the address limit can tell
        ]
    assert answers == [401] * 20 + [429] * 10  # 20 failures per address in 15 minutes
    assert set(audited_clients(db)) == {"127.0.0.1"}  # the socket's peer, every time


def test_behind_a_named_proxy_each_forwarded_client_is_limited_on_its_own(
    tmp_path: Path, db: Path, server_args: list[str]
) -> None:
    args = [*server_args, "--forwarded-allow-ips", PROXY]
    with gatescan_dashboard(args, db, tmp_path) as port:
        first = [
            log_in(port, f"guess-{n}", "wrong password", forwarded_for="203.0.113.7").status
            for n in range(21)
        ]
        second = log_in(port, "guess-x", "wrong password", forwarded_for="203.0.113.8").status
        # A client's own X-Forwarded-For comes first; the proxy adds the address it saw last:
        # the right-most address that is not the proxy's is the client's.
        prefixed = log_in(port, "guess-y", "x", forwarded_for="198.51.100.1, 203.0.113.7")
        # Not from the proxy: the header is the client's own word, and ignored.
        forged = log_in(port, "guess-z", "x", forwarded_for="203.0.113.7", source=ELSEWHERE)
        right = log_in(port, "manager", PASSWORD, forwarded_for="203.0.113.9")
    assert first == [401] * 20 + [429]
    assert (second, prefixed.status, forged.status, right.status) == (401, 429, 401, 303)
    clients = audited_clients(db)
    assert clients == ["203.0.113.7"] * 21 + ["203.0.113.8", "203.0.113.7", ELSEWHERE]


def test_a_name_s_tries_wait_after_its_failures_and_the_right_password_then_logs_in(
    tmp_path: Path, db: Path, server_args: list[str]
) -> None:
    def wait_for(answer: Answer) -> None:
        assert answer.retry_after is not None
        time.sleep(int(answer.retry_after))  # the wait under test, on the wall clock

    with gatescan_dashboard(server_args, db, tmp_path) as port:
        answers = [log_in(port, "manager", "wrong password") for _ in range(5)]
        while len([a for a in answers if a.status == 401]) < 7:  # two more, each when it may
            answers.append(log_in(port, "manager", "wrong password"))
            if answers[-1].status == 429:
                wait_for(answers[-1])
        too_soon = log_in(port, "manager", PASSWORD)  # 4 s after the 7th failure's answer
        wait_for(too_soon)
        after_the_wait = log_in(port, "manager", PASSWORD)
    waits = [a.retry_after for a in answers if a.status == 429]
    assert [a.status for a in answers if a.status != 429] == [401] * 7
    assert len(waits) <= 2 and all(wait in ("1", "2") for wait in waits)  # the 1 s, the 2 s
    assert too_soon.status == 429 and too_soon.retry_after in ("3", "4")
    assert after_the_wait.status == 303


@pytest.mark.parametrize("addresses", [40, 2])
def test_a_real_login_gets_in_while_40_bad_logins_are_being_checked(
    tmp_path: Path, db: Path, server_args: list[str], addresses: int
) -> None:
    """40 bad logins, from 40 addresses (a botnet) or 2 (20 each, an address's limit), come
    through the proxy at once, and the real user's login after all of them; it ends in a
    session. (It got 503 when a waiting login held a worker thread: 2 checking, 8 waiting, the
    rest refused.) From 40 fresh addresses it is last in the queue for scrypt; from 2 it goes
    before all but their first ones."""
    args = [*server_args, "--forwarded-allow-ips", PROXY]
    with gatescan_dashboard(args, db, tmp_path) as port:
        flood = Flood(port, 40, addresses)
        real = Browser(port)
        flood.send()
        started = time.monotonic()
        answer = real.log_in("manager", PASSWORD, forwarded_for="198.51.100.7")
        took = time.monotonic() - started
        statuses = flood.statuses()
    print(f"the real login took {took:.2f} s behind 40 bad ones from {addresses} addresses")
    assert answer.status == 303, answer
    assert statuses == [401] * 40  # each was checked: none refused, none limited


class Flood:
    """`count` browsers, from `addresses` forwarded addresses in turn, posting a wrong password
    to a name of their own at once; `send` returns once every post has been written."""

    def __init__(self, port: int, count: int, addresses: int) -> None:
        self._addresses = addresses
        self._browsers = [Browser(port) for _ in range(count)]
        self._go = threading.Barrier(count + 1, timeout=60)
        self._sent = threading.Barrier(count + 1, timeout=60)
        self._answers: list[int] = []
        self._threads = [
            threading.Thread(target=self._attempt, args=(n, browser))
            for n, browser in enumerate(self._browsers)
        ]
        for thread in self._threads:
            thread.start()

    def _attempt(self, n: int, browser: Browser) -> None:
        self._go.wait()
        browser.post(f"guess-{n}", "wrong password", f"203.0.113.{n % self._addresses + 1}")
        self._sent.wait()
        self._answers.append(browser.answer().status)

    def send(self) -> None:
        self._go.wait()
        self._sent.wait()

    def statuses(self) -> list[int]:
        for thread in self._threads:
            thread.join(timeout=120)
        return sorted(self._answers)


@pytest.mark.parametrize("proxies", ["*", "proxy.example", "10.0.0.5/8", "127.0.0.1,,x"])
def test_forwarded_allow_ips_takes_addresses_and_networks_only(
    tmp_path: Path, proxies: str
) -> None:
    db = str(tmp_path / "site.db")
    result = run_gatescan(["web", "--db", db, "--forwarded-allow-ips", proxies], tmp_path)
    assert result.returncode == 2
    assert "--forwarded-allow-ips: " in result.stderr and "Traceback" not in result.stderr
