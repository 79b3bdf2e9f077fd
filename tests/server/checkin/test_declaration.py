"""What a person may declare at a poster (issue 18): names as on ID cards, Vietnamese phone
numbers, an optional CCCD, the health answers; and the stamp that ties a form to its location."""

from __future__ import annotations

import pytest

from protocol.verdicts import Direction
from server.checkin.declaration import (
    HEALTH_QUESTIONS,
    normal_phone,
    phone_subject_id,
    read_declaration,
    subject_id,
)
from server.checkin.limits import SlidingWindow
from server.checkin.stamps import STAMP_LIFETIME_S, form_stamp, stamp_problem
from server.checkin.words import EN, VI
from server.locations.records import Location
from tests.support.web import START

HEALTHY = {f"health_{q}": "no" for q in HEALTH_QUESTIONS}


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("0901234567", "+84901234567"),
        ("090 123 4567", "+84901234567"),
        ("090.123.4567", "+84901234567"),
        ("+84 90 123 4567", "+84901234567"),
        ("84901234567", "+84901234567"),
        ("0084901234567", "+84901234567"),
        ("0356-789-012", "+84356789012"),
        ("(028) 3822 1234", "+842838221234"),  # a landline: 11 digits
    ],
)
def test_a_vietnamese_phone_number_is_kept_as_plus_84(typed: str, kept: str) -> None:
    assert normal_phone(typed) == kept


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "12345",
        "090123456",
        "09012345678",
        "0101234567",
        "+1 415 555 0100",
        "+8490123456",
        "０９０１２３４５６７",
        "090123456a",
        "tel:0901234567",
    ],
)
def test_other_phone_numbers_are_refused(typed: str) -> None:
    assert normal_phone(typed) is None


def test_a_declaration_is_read_with_its_name_as_on_the_card() -> None:
    reading = read_declaration(
        {
            "name": "  Nguyễn   Thị Thu Uyên ",
            "phone": "0901234567",
            "cccd": "079 203 012 345",
            **HEALTHY,
            "direction": "out",
        },
        Direction.IN,
    )
    assert reading.problems == {}
    made = reading.declaration
    assert made is not None
    assert made.name == "Nguyễn Thị Thu Uyên" and made.cccd == "079203012345"
    assert made.direction is Direction.OUT and made.health == ("no", "no", "no")
    assert made.code_text() == "health=n,n,n tel=+84901234567"
    assert subject_id(made, b"k" * 32) == "079203012345"


def test_names_as_on_id_cards_only() -> None:
    for good in ("H'Hen Niê", "Y-Ngông Niê Kdăm", "Đặng Thị Ánh Nguyệt", "Nguyễn Văn A."):
        assert (
            read_declaration(
                {"name": good, "phone": "0901234567", **HEALTHY}, Direction.IN
            ).problems
            == {}
        ), good
    for bad in (
        "<script>alert(1)</script>",
        '=HYPERLINK("x")',
        "Anh\u202eEvil",
        "123",
        "a" * 101,
        "   ",
        "Nguyễn\nVăn",
    ):
        problems = read_declaration(
            {"name": bad, "phone": "0901234567", **HEALTHY}, Direction.IN
        ).problems
        assert set(problems) == {"name"}, bad


def test_every_problem_at_once_with_the_values_kept() -> None:
    reading = read_declaration({"name": "<b>x</b>", "phone": "123", "cccd": "12"}, Direction.IN)
    assert reading.declaration is None
    assert reading.problems == {
        "name": "name.invalid",
        "phone": "phone.invalid",
        "cccd": "cccd.invalid",
        **{f"health_{q}": "health.missing" for q in HEALTH_QUESTIONS},
    }
    assert reading.values["name"] == "<b>x</b>" and reading.values["phone"] == "123"


def test_a_phone_s_subject_is_a_keyed_hash_stable_per_site() -> None:
    one = phone_subject_id("+84901234567", b"a" * 32)
    assert one == phone_subject_id("+84901234567", b"a" * 32)
    assert one != phone_subject_id("+84901234567", b"b" * 32)
    assert one.startswith("tel-") and len(one) == 24 and "901234567" not in one


def test_both_languages_have_the_same_words() -> None:
    assert set(VI) == set(EN)


def _location(key: bytes = b"k" * 32, location_id: str = "loc-abcdefghij") -> Location:
    from protocol.verdicts import Direction

    return Location(location_id, "hq", "Sảnh", Direction.IN, True, START, key)


def test_a_form_stamp_is_good_at_its_location_for_two_hours() -> None:
    lobby = _location()
    now = int(START.timestamp())
    stamp = form_stamp(lobby, now)
    assert stamp_problem(stamp, lobby, now + STAMP_LIFETIME_S) is None
    assert stamp_problem(stamp, lobby, now + STAMP_LIFETIME_S + 1) == "stamp.expired"
    assert stamp_problem(stamp, _location(location_id="loc-bbbbbbbbbb"), now) == "stamp.invalid"
    assert stamp_problem(stamp, _location(key=b"r" * 32), now) == "stamp.invalid", "re-keyed"
    assert stamp_problem(form_stamp(lobby, now + 3600), lobby, now) == "stamp.invalid"
    issued, signature = stamp.split(".")
    assert stamp_problem(f"{int(issued) + 1}.{signature}", lobby, now) == "stamp.invalid"
    assert stamp_problem("", lobby, now) == "stamp.invalid"


def test_a_sliding_window_lets_the_limit_through_then_waits() -> None:
    now = [0.0]
    window = SlidingWindow(2, 60, lambda: now[0])
    for _ in range(2):
        assert window.retry_after("a") == 0
        window.count("a")
    assert window.retry_after("a") == 60 and window.retry_after("b") == 0
    now[0] = 59.5
    assert window.retry_after("a") == 1
    now[0] = 60
    assert window.retry_after("a") == 0
