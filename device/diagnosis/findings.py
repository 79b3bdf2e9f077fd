"""One check's result, and the time bound every check runs under.

Finding(Level.FAIL, "tcp", "nothing listens on broker:8883", "start the broker ...")
.line()   'FAIL tcp: nothing listens on broker:8883 — start the broker ...'
bounded("tcp", check, 5.0)   the check's finding, or FAIL when it has not answered in time
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"  # works, but someone should look
    FAIL = "FAIL"  # the gate cannot do its job until it is fixed


@dataclass(frozen=True)
class Finding:
    level: Level
    name: str
    found: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.level.value} {self.name}: {self.found}"
        return f"{text} — {self.fix}" if self.fix else text

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level.value, "name": self.name, "found": self.found, "fix": self.fix}


def ok(name: str, found: str) -> Finding:
    return Finding(Level.OK, name, found)


def warn(name: str, found: str, fix: str) -> Finding:
    return Finding(Level.WARN, name, found, fix)


def fail(name: str, found: str, fix: str) -> Finding:
    return Finding(Level.FAIL, name, found, fix)


def bounded(name: str, check: Callable[[], Finding], seconds: float) -> Finding:
    """`check()` in a thread of its own, waited for `seconds` at most: a check that hangs (a
    camera that never answers, a resolver that never replies) is a FAIL, never a doctor that
    hangs. The thread is a daemon: the process exits without it."""
    result: list[Finding] = []

    def run() -> None:
        try:
            result.append(check())
        except Exception as error:  # a check's own bug is one line, not the end of the doctor
            result.append(
                fail(name, f"the check itself failed ({type(error).__name__}: {error})", REPORT)
            )

    thread = threading.Thread(target=run, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(seconds)
    if result:
        return result[0]
    return fail(name, f"no answer within {seconds:g} s", "see the lines above; run it again")


REPORT = "report it with this output (gatescan doctor --json)"
