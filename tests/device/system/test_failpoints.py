"""The agent's failpoints (device/system/failpoints.py): inert unless named, exact about the hit
they fire on, and a start-up error when misspelt."""

from __future__ import annotations

import pytest

from device.system.failpoints import AGENT_FAILPOINTS_ENV, DROP_AFTER_LIGHT, Failpoints


def test_unset_or_empty_is_inert() -> None:
    for env in ({}, {AGENT_FAILPOINTS_ENV: ""}, {AGENT_FAILPOINTS_ENV: " ; "}):
        failpoints = Failpoints.from_environment(env)
        assert failpoints.active == {}
        assert not any(failpoints.reached(DROP_AFTER_LIGHT) for _ in range(100))


def test_drop_fires_on_the_first_pass_only() -> None:
    failpoints = Failpoints.parse("agent.drop_after_light=drop")
    assert [failpoints.reached(DROP_AFTER_LIGHT) for _ in range(3)] == [True, False, False]


def test_drop_n_fires_on_the_nth_pass_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    failpoints = Failpoints.from_environment(
        {AGENT_FAILPOINTS_ENV: f" {DROP_AFTER_LIGHT} = drop:3 "}
    )
    assert failpoints.active == {DROP_AFTER_LIGHT: 3}
    assert [failpoints.reached(DROP_AFTER_LIGHT) for _ in range(5)] == [
        False, False, True, False, False
    ]  # fmt: skip
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(AGENT_FAILPOINTS_ENV in m for m in messages), "armed: a warning at start"
    assert any("agent.drop_after_light reached (hit 3)" in m for m in messages)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("agent.drop_after_lite=drop:2", "unknown agent failpoint 'agent.drop_after_lite'"),
        ("collector.after_commit=kill:3", "unknown agent failpoint"),
        ("agent.drop_after_light=kill", "bad action"),
        ("agent.drop_after_light=drop:0", "bad action"),
        ("agent.drop_after_light=drop:x", "bad action"),
        ("agent.drop_after_light", "bad action"),
    ],
)
def test_an_unknown_point_or_action_is_refused(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Failpoints.from_environment({AGENT_FAILPOINTS_ENV: spec})


def test_the_constructor_refuses_unknown_points_too() -> None:
    with pytest.raises(ValueError, match="unknown agent failpoint"):
        Failpoints({"agent.nowhere": 1})
