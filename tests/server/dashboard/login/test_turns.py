"""Turns to check a password: first come first served across event loops, no turn lost to a
login that gave up or went away, and a bounded queue and wait (HashingBusy: 503)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from server.accounts.passwords import HashingBusy
from server.dashboard.login.turns import CheckTurns
from tests.support.waiting import wait_until

T = TypeVar("T")


class Checks:
    """Password checks that each wait for the test's say-so, and the order they ran in."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = threading.Semaphore(0)

    def check(self, name: str) -> str:
        self.order.append(name)
        assert self.release.acquire(timeout=30), "the test never let the check end"
        return name


def run_alone(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)` on a thread of its own: the test's thread may already hold a
    running loop (Playwright's sync API keeps one there while the browser tests' browser is
    open)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(coroutine))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    if failure:
        raise failure[0]
    assert outcome, "the coroutine did not finish within 60 s"
    return outcome[0]


def in_own_loop(turns: CheckTurns, checks: Checks, name: str, results: list[object]) -> None:
    """A login on its own event loop (as each of the test client's browsers has)."""

    def run() -> None:
        try:
            results.append(asyncio.run(turns.run(lambda: checks.check(name))))
        except HashingBusy as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()


def test_turns_go_first_come_first_served_across_event_loops() -> None:
    turns = CheckTurns(at_once=1, waiting=10, wait_s=30)
    checks = Checks()
    results: list[object] = []
    in_own_loop(turns, checks, "first", results)
    wait_until(lambda: checks.order == ["first"], 10, "the first check to run")
    for queued, name in enumerate(("second", "third", "fourth"), start=1):
        in_own_loop(turns, checks, name, results)
        wait_until(lambda n=queued: turns.waiting == n, 10, f"{name} to wait")  # in this order
    for _ in range(4):
        checks.release.release()
    wait_until(lambda: len(results) == 4, 30, "every check to end")
    assert checks.order == ["first", "second", "third", "fourth"]


def test_a_full_queue_refuses_at_once_and_a_long_wait_gives_up() -> None:
    turns = CheckTurns(at_once=1, waiting=1, wait_s=0.2)
    checks = Checks()
    results: list[object] = []
    in_own_loop(turns, checks, "running", results)
    wait_until(lambda: checks.order == ["running"], 10, "the check to run")
    in_own_loop(turns, checks, "waiting", results)
    wait_until(lambda: turns.waiting == 1, 10, "one to wait")
    with pytest.raises(HashingBusy, match="waiting"):  # no room in the queue
        run_alone(turns.run(lambda: "never"))
    wait_until(lambda: len(results) == 1, 10, "the waiting one to give up")
    assert isinstance(results[0], HashingBusy)
    checks.release.release()
    wait_until(lambda: len(results) == 2, 10, "the running check to end")
    assert run_alone(turns.run(lambda: "free again")) == "free again"


def test_a_login_that_goes_away_while_it_waits_passes_its_turn_on() -> None:
    turns = CheckTurns(at_once=1, waiting=10, wait_s=30)
    checks = Checks()
    results: list[object] = []
    in_own_loop(turns, checks, "running", results)
    wait_until(lambda: checks.order == ["running"], 10, "the check to run")

    async def leave_while_waiting() -> None:
        waiting = asyncio.create_task(turns.run(lambda: checks.check("gone")))
        while turns.waiting == 0:
            await asyncio.sleep(0.01)  # its own loop: nothing else to wait on
        waiting.cancel()  # the client closed the connection
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run_alone(leave_while_waiting())
    in_own_loop(turns, checks, "next", results)
    checks.release.release()
    checks.release.release()
    wait_until(lambda: len(results) == 2, 30, "both checks to end")
    assert checks.order == ["running", "next"]


def test_a_login_from_an_address_with_fewer_failures_goes_first() -> None:
    turns = CheckTurns(at_once=1, waiting=10, wait_s=30)
    checks = Checks()
    results: list[object] = []

    def queue(name: str, rank: int) -> None:
        def run() -> None:
            results.append(asyncio.run(turns.run(lambda: checks.check(name), rank)))

        before = turns.waiting
        threading.Thread(target=run).start()
        wait_until(lambda: turns.waiting == before + 1, 10, f"{name} to wait")

    in_own_loop(turns, checks, "running", results)
    wait_until(lambda: checks.order == ["running"], 10, "the check to run")
    for name, rank in [("flood-2", 1), ("flood-3", 2), ("other-2", 1), ("real user", 0)]:
        queue(name, rank)
    for _ in range(5):
        checks.release.release()
    wait_until(lambda: len(results) == 5, 30, "every check to end")
    assert checks.order == ["running", "real user", "flood-2", "other-2", "flood-3"]
