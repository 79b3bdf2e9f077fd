"""The repeat window: one showing per code held in view."""

from device.verdict.debounce import Debounce


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_sighting_is_a_new_showing_and_repeats_are_not() -> None:
    clock = FakeClock()
    debounce = Debounce(3.0, clock)
    assert debounce.is_new_showing(b"A")
    clock.now = 1.0
    assert not debounce.is_new_showing(b"A")


def test_code_held_in_view_longer_than_the_window_is_still_one_showing() -> None:
    clock = FakeClock()
    debounce = Debounce(3.0, clock)
    assert debounce.is_new_showing(b"A")
    for step in range(1, 40):  # seen every 0.5 s for 20 s
        clock.now = step * 0.5
        assert not debounce.is_new_showing(b"A")


def test_code_shown_again_after_the_window_is_a_new_showing() -> None:
    clock = FakeClock()
    debounce = Debounce(3.0, clock)
    debounce.is_new_showing(b"A")
    clock.now = 3.01
    assert debounce.is_new_showing(b"A")


def test_different_codes_are_independent() -> None:
    clock = FakeClock()
    debounce = Debounce(3.0, clock)
    assert debounce.is_new_showing(b"A")
    assert debounce.is_new_showing(b"B")
    assert not debounce.is_new_showing(b"A")


def test_zero_window_makes_every_sighting_new_once_time_moves() -> None:
    clock = FakeClock()
    debounce = Debounce(0.0, clock)
    assert debounce.is_new_showing(b"A")
    clock.now = 0.001
    assert debounce.is_new_showing(b"A")
