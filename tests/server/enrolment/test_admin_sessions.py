"""Two sessions of the broker's admin at once, on the site's own Mosquitto: the broker gives
every session of one user the same client id, so the second takes it from the first. The first
says so at once (AdminSessionTaken, not "did not answer" after the timeout), does not reconnect
to take the id back, and `run_as_admin` runs its work again until both are done.

Found by CI (stop 22): a test opened an admin session while the server's start-up task
(`PolicyRightsTask`) had one open, and its command waited 5 s for an answer that went to the
session taken over. A `gatescan gate revoke` while a gate enrols met the same race."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

import pytest

from server.broker_admin.dynsec import (
    ATTEMPTS,
    AdminSessionTaken,
    BrokerAdmin,
    BrokerAdminError,
    run_as_admin,
)
from server.site.installation import Installation
from tests.support.tls_site import SiteBroker, admin_login, new_site, site_broker, site_folder

GATES = 12  # per thread: each enrolment opens a session of its own


@pytest.fixture
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder)


@pytest.fixture
def broker(site: Installation) -> Iterator[SiteBroker]:
    with site_broker(site) as running:
        yield running


def test_a_session_taken_over_says_so_at_once_and_leaves_the_new_one_working(
    site: Installation, broker: SiteBroker
) -> None:
    login = admin_login(site)
    first = BrokerAdmin(login).__enter__()
    try:
        first.command("listClients")  # working, alone
        with BrokerAdmin(login) as second:  # the same client id: the broker drops `first`
            started = time.monotonic()
            with pytest.raises(AdminSessionTaken, match="dropped the admin session"):
                first.command("listClients")
            took = time.monotonic() - started
            time.sleep(0.5)  # had `first` reconnected, it would have taken the id back by now
            second.ensure_gate("gate-hq-01", "hq", "p" * 24)
            clients = second.command("listClients")["data"]["clients"]
    finally:
        first.__exit__(None, None, None)
    print(f"\nthe session taken over knew in {took * 1000:.0f} ms (timeout {first._timeout} s)")
    assert took < 2.0
    assert "gate-hq-01" in clients


def test_two_admins_at_once_both_finish_their_work(site: Installation, broker: SiteBroker) -> None:
    """The enrolment service and a technician's commands, side by side: every gate of each
    thread is created, none lost to a session taken over."""
    login = admin_login(site)
    errors: list[BaseException] = []

    def enrol(prefix: str) -> None:
        try:
            for n in range(GATES):
                device_id = f"{prefix}-{n:02d}"

                def work(admin: BrokerAdmin, device_id: str = device_id) -> None:
                    admin.ensure_gate(device_id, "hq", "p" * 24)

                run_as_admin(lambda: BrokerAdmin(login), work)
        except BaseException as exc:  # reported below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=enrol, args=(p,)) for p in ("gate-a", "gate-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    took = time.monotonic() - started
    assert not errors, errors
    with BrokerAdmin(login) as admin:
        clients = set(admin.command("listClients")["data"]["clients"])
    expected = {f"{p}-{n:02d}" for p in ("gate-a", "gate-b") for n in range(GATES)}
    assert expected <= clients
    print(f"\n{2 * GATES} enrolments from two threads at once: {took:.1f} s")


class _Taken:
    """A session whose work is taken over the first `times` times."""

    def __init__(self, times: int, error: BrokerAdminError | None = None) -> None:
        self.times = times
        self.opened = 0
        self.error = error or AdminSessionTaken("taken")

    def open(self) -> AbstractContextManager[_Taken]:
        self.opened += 1
        return nullcontext(self)

    def work(self, session: _Taken) -> str:
        if self.opened <= self.times:
            raise self.error
        return "done"


def test_run_as_admin_tries_again_only_for_a_session_taken_over() -> None:
    pauses: list[float] = []
    again = _Taken(times=2)
    assert run_as_admin(again.open, again.work, pause=pauses.append) == "done"
    assert again.opened == 3 and len(pauses) == 2 and pauses[0] > 0

    spent = _Taken(times=ATTEMPTS)
    with pytest.raises(AdminSessionTaken):
        run_as_admin(spent.open, spent.work, pause=pauses.append)
    assert spent.opened == ATTEMPTS

    refused = _Taken(times=1, error=BrokerAdminError("createClient: not authorised"))
    with pytest.raises(BrokerAdminError, match="not authorised"):
        run_as_admin(refused.open, refused.work, pause=pauses.append)
    assert refused.opened == 1  # a refusal is not tried again
