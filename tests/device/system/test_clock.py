"""The gate's sense of time: sync detection from real files and the real kernel, boot id, and the
fault-injection clock the fault tests start the agent with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.system.clock import (
    FAULT_CLOCK_ENV,
    TIME_ERROR,
    ClockFault,
    FaultyClock,
    FixedSyncClock,
    SystemClock,
    clock_from_environment,
    kernel_clock_state,
    parse_clock_fault,
    read_boot_id,
)

TIME_OK = 0


def kernel_says(state: int | None) -> SystemClock:
    return SystemClock(Path("no-such-flag"), kernel_state=lambda: state)


# --- SystemClock ---------------------------------------------------------------------------


def test_timesyncd_flag_file_means_synced_whatever_the_kernel_says(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    flag.touch()
    assert SystemClock(flag, kernel_state=lambda: TIME_ERROR).is_synced()


def test_without_the_flag_a_kernel_time_error_means_unsynced(tmp_path: Path) -> None:
    clock = SystemClock(tmp_path / "synchronized", kernel_state=lambda: TIME_ERROR)
    assert not clock.is_synced()


def test_without_the_flag_a_kernel_in_time_ok_means_synced(tmp_path: Path) -> None:
    assert SystemClock(tmp_path / "synchronized", kernel_state=lambda: TIME_OK).is_synced()


def test_no_flag_and_no_kernel_reading_means_unsynced() -> None:
    assert not kernel_says(None).is_synced()


def test_the_flag_appearing_later_is_noticed(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    clock = SystemClock(flag, kernel_state=lambda: TIME_ERROR)
    assert not clock.is_synced()
    flag.touch()  # what systemd-timesyncd does once NTP answered
    assert clock.is_synced()


def test_the_real_adjtimex_answers_a_clock_state() -> None:
    state = kernel_clock_state()
    assert state is None or 0 <= state <= TIME_ERROR


def test_system_clock_is_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert before <= now <= datetime.now(UTC)


def test_boot_id_comes_from_the_file_or_is_made_up(tmp_path: Path) -> None:
    boot_file = tmp_path / "boot_id"
    boot_file.write_text("3f2a1c4e-0000-4000-8000-000000000001\n")
    assert read_boot_id(boot_file) == "3f2a1c4e-0000-4000-8000-000000000001"
    made_up = read_boot_id(tmp_path / "missing")
    assert len(made_up) == 36 and made_up != read_boot_id(tmp_path / "missing")


# --- fault injection -----------------------------------------------------------------------


def test_fault_spec_reads_every_item() -> None:
    assert parse_clock_fault("unsynced, offset=-7200, jump=-3600@2.5") == ClockFault(
        synced=False, offset=-7200.0, jump=-3600.0, jump_after=2.5
    )
    assert parse_clock_fault("synced") == ClockFault(synced=True)


@pytest.mark.parametrize(
    "spec", ["unsyncd", "offset=soon", "jump=-3600", "jump=-3600@-1", "offset=nan", ""]
)
def test_a_bad_fault_spec_names_the_item_and_the_choices(spec: str) -> None:
    with pytest.raises(ValueError, match=f"{FAULT_CLOCK_ENV}.*use unsynced"):
        parse_clock_fault(spec)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_faulty_clock_steps_back_at_the_set_time_and_stays_stepped() -> None:
    monotonic = FakeMonotonic()
    clock = FaultyClock(
        FixedSyncClock(), ClockFault(jump=-3600, jump_after=2.0), monotonic=monotonic
    )
    before = clock.now()
    assert abs((before - datetime.now(UTC)).total_seconds()) < 5
    monotonic.now += 2.0
    after = clock.now()
    assert (before - after).total_seconds() == pytest.approx(3600, abs=5)
    monotonic.now += 100
    assert (before - clock.now()).total_seconds() == pytest.approx(3600, abs=5)


def test_faulty_clock_offset_and_sync_flag_override_the_real_clock() -> None:
    clock = FaultyClock(FixedSyncClock(synced=True), ClockFault(synced=False, offset=-60))
    assert not clock.is_synced()
    assert (datetime.now(UTC) - clock.now()).total_seconds() == pytest.approx(60, abs=5)
    assert FaultyClock(FixedSyncClock(synced=True), ClockFault()).is_synced()


def test_without_the_variable_the_real_clock_is_used() -> None:
    real = FixedSyncClock()
    assert clock_from_environment({}, base=real) is real
    assert clock_from_environment({FAULT_CLOCK_ENV: "  "}, base=real) is real


def test_the_variable_injects_a_faulty_clock_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    clock = clock_from_environment({FAULT_CLOCK_ENV: "unsynced"}, base=FixedSyncClock())
    assert isinstance(clock, FaultyClock)
    assert not clock.is_synced()
    assert "fault injection" in caplog.text
