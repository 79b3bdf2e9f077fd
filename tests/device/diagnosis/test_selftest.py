"""`gatescan selftest gpio` (device/diagnosis/selftest.py) on gpiozero MockFactory pins: each
output in turn, the door relay only with include_relay; refused while an agent holds the journal
(and with it the pins)."""

from __future__ import annotations

from pathlib import Path

from gpiozero.pins.mock import MockFactory

from device.diagnosis.selftest import REFUSED_RUNNING, selftest_gpio
from device.journal.journal import Journal
from firmware_config.schema import GateConfig, IndicatorConfig

GREEN, RED, BUZZER, RELAY = 17, 27, 22, 23


def config(tmp_path: Path) -> GateConfig:
    return GateConfig(
        device_id="gate-1",
        data_dir=tmp_path / "data",
        indicator=IndicatorConfig(relay=RELAY),
    )


def lit(factory: MockFactory, pin: int) -> list[bool]:
    return [state.state for state in factory.pin(pin).states]


def run(tmp_path: Path, include_relay: bool) -> tuple[int, list[str], MockFactory]:
    said: list[str] = []
    factory = MockFactory()
    code = selftest_gpio(
        config(tmp_path), include_relay=include_relay, pin_factory=factory,
        say=said.append, sleep=lambda s: None,
    )  # fmt: skip
    return code, said, factory


def test_each_output_in_turn_and_the_relay_only_when_asked(tmp_path: Path) -> None:
    code, said, _ = run(tmp_path, include_relay=False)
    assert code == 0
    turns = [line.split(" ")[0] for line in said if ": on for" in line]
    assert turns == ["green", "red", "buzzer"]
    assert any("--include-relay" in line for line in said)
    code, said, _ = run(tmp_path, include_relay=True)
    assert [line.split(" ")[0] for line in said if ": on for" in line] == [
        "green",
        "red",
        "buzzer",
        "relay",
    ]


def test_the_pins_play_the_pattern(tmp_path: Path) -> None:
    factory = MockFactory()
    said: list[str] = []
    code = selftest_gpio(
        config(tmp_path), include_relay=False, pin_factory=factory, say=said.append
    )
    assert code == 0
    for pin in (GREEN, RED, BUZZER):
        assert lit(factory, pin)[:3] == [False, True, False], pin
    assert True not in lit(factory, RELAY)


def test_refused_while_the_agent_holds_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "data")
    try:
        code, said, factory = run(tmp_path, include_relay=True)
    finally:
        journal.close()
    assert code == 1 and said == [f"refused: {REFUSED_RUNNING}"]
    assert factory.pins == {}, "no pin was touched"
