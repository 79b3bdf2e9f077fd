"""Failpoints: inert unless GATESCAN_FAILPOINTS arms them, exact about which hit kills."""

from pathlib import Path

import pytest

from server.collector.failpoints import (
    AFTER_ACK,
    AFTER_COMMIT,
    BEFORE_COMMIT,
    FAILPOINTS_ENV,
    KNOWN_POINTS,
    Failpoints,
)
from server.collector.service import Collector
from server.store.database import Store


class KillRecorder:
    def __init__(self) -> None:
        self.kills = 0

    def __call__(self) -> None:
        self.kills += 1


def test_failpoints_are_inert_without_the_environment_variable() -> None:
    failpoints = Failpoints.from_environment({})

    # Armed, the default action would SIGKILL this very test process.
    for _ in range(5):
        for point in KNOWN_POINTS:
            failpoints.reached(point)

    assert failpoints.active == {}


def test_an_empty_variable_arms_nothing() -> None:
    assert Failpoints.from_environment({FAILPOINTS_ENV: " ; "}).active == {}


def test_kill_n_kills_on_the_nth_hit_of_that_point_only() -> None:
    recorder = KillRecorder()
    armed = Failpoints.parse(f"{AFTER_COMMIT}=kill:3").active
    failpoints = Failpoints(armed, kill=recorder)

    failpoints.reached(AFTER_COMMIT)
    failpoints.reached(BEFORE_COMMIT)
    failpoints.reached(AFTER_COMMIT)
    assert recorder.kills == 0
    failpoints.reached(AFTER_COMMIT)
    assert recorder.kills == 1
    failpoints.reached(AFTER_COMMIT)
    assert recorder.kills == 1


def test_a_spec_arms_several_points() -> None:
    spec = f" {BEFORE_COMMIT}=kill ; {AFTER_ACK}=kill:12 "

    assert Failpoints.parse(spec).active == {BEFORE_COMMIT: 1, AFTER_ACK: 12}


@pytest.mark.parametrize(
    "spec",
    [
        "collector.after_comit=kill",  # a typo must not leave a crash test testing nothing
        f"{AFTER_COMMIT}=explode",
        f"{AFTER_COMMIT}=kill:0",
        f"{AFTER_COMMIT}=kill:x",
        f"{AFTER_COMMIT}=kill:²",
        f"{AFTER_COMMIT}",
    ],
)
def test_a_bad_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="failpoint"):
        Failpoints.parse(spec)


def test_the_collector_reads_its_failpoints_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spec the collector refuses proves it read the variable, without arming a kill here.
    monkeypatch.setenv(FAILPOINTS_ENV, "collector.nowhere=kill")
    store = Store(tmp_path / "gatescan.db")

    with pytest.raises(ValueError, match=r"collector\.nowhere"):
        Collector(broker_url="mqtt://127.0.0.1:1", store=store)
