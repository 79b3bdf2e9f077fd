"""CCCD parsing (both variants, bad IDs, dates, Vietnamese names) and raw codes."""

import hashlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.credentials import Credential, Rejection, parse_credential
from protocol import CredentialType, Reason

SEVEN = (
    "079203012345|272345678|Nguyễn Thị Thu Uyên|05061993|Nữ"
    "|Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội|21042021"
)
SIX = "001099012345|Trần Văn Đức|01011990|Nam|Thôn Đông, Xã Yên Sở, Hoài Đức, Hà Nội|15082021"


def cccd(text: str) -> Credential:
    parsed = parse_credential(text.encode("utf-8"))
    assert isinstance(parsed, Credential), parsed
    assert parsed.card is not None
    return parsed


def rejected(text: str) -> Rejection:
    parsed = parse_credential(text.encode("utf-8"))
    assert isinstance(parsed, Rejection), parsed
    return parsed


def test_seven_field_card_keeps_every_field_exactly() -> None:
    parsed = cccd(SEVEN)
    card = parsed.card
    assert card is not None
    assert parsed.credential_type is CredentialType.CCCD
    assert parsed.subject_id == "079203012345"
    assert parsed.subject_name == "Nguyễn Thị Thu Uyên"
    assert card.old_id == "272345678"
    assert card.date_of_birth == date(1993, 6, 5)
    assert card.gender == "Nữ"
    assert card.address == "Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội"
    assert card.issue_date == date(2021, 4, 21)


def test_six_field_variant_has_no_old_id() -> None:
    card = cccd(SIX).card
    assert card is not None
    assert card.old_id == ""
    assert card.full_name == "Trần Văn Đức"
    assert card.date_of_birth == date(1990, 1, 1)


def test_seven_field_card_with_empty_old_id() -> None:
    parsed = cccd("001099012345||Lý Ơn|01011990|Nam|Hà Nội|15082021")
    assert parsed.subject_name == "Lý Ơn"


def test_trailing_newline_and_extra_fields_are_tolerated() -> None:
    assert cccd(SEVEN + "\n").subject_id == "079203012345"
    assert cccd(SEVEN + "|extra").subject_name == "Nguyễn Thị Thu Uyên"


def test_digest_and_length_are_of_the_exact_bytes() -> None:
    data = SEVEN.encode("utf-8")
    parsed = cccd(SEVEN)
    assert parsed.code_sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.code_length == len(data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("079203012345|272345678|Uyên|31021993|Nữ|Hà Nội|21042021", "not a calendar date"),
        ("079203012345|272345678|Uyên|5061993|Nữ|Hà Nội|21042021", "not ddmmyyyy"),
        ("079203012345|272345678|Uyên|05061993|Nữ|Hà Nội|2104202x", "not ddmmyyyy"),
        ("079203012345|27234567|Uyên|05061993|Nữ|Hà Nội|21042021", "neither empty nor 9 digits"),
        ("079203012345|272345678||05061993|Nữ|Hà Nội|21042021", "name is empty"),
        ("079203012345|272345678|Uyên|05061993|Nữ|Hà Nội|21041990", "before the date of birth"),
        ("079203012345|Uyên|05061993|Nữ", "4 fields"),
        ("079203012345|272345678|Uy\u202eên|05061993|Nữ|Hà Nội|21042021", "control or format"),
        ("079203012345|272345678|Uy\x00ên|05061993|Nữ|Hà Nội|21042021", "control or format"),
        ("079203012345|272345678|Uyên|05061893|Nữ|Hà Nội|21042021", "before 1900"),
        ("099203012345|272345678|Uyên|05061993|Nữ|Hà Nội|21042021", "no province code"),
        ("000000000000|272345678|Uyên|05061993|Nữ|Hà Nội|21042021", "no province code"),
        ("079203012345|272345678|<script>x</script>|05061993|Nữ|Hà Nội|21042021", "U+003C"),
        ('079203012345|272345678|=HYPERLINK("x")|05061993|Nữ|Hà Nội|21042021', "U+003D"),
        ("079203012345|272345678|Uyên 2|05061993|Nữ|Hà Nội|21042021", "U+0032"),
        ("079203012345|272345678|Uyên|05061993|Nữ|Hà\nNội|21042021", "control or format"),
        ("079203012345|272345678|Uyên|05061993|N\u2028ữ|Hà Nội|21042021", "control or format"),
    ],
)
def test_damaged_cards_are_rejected_as_invalid_with_a_reason(text: str, why: str) -> None:
    rejection = rejected(text)
    assert rejection.reason is Reason.INVALID
    assert rejection.credential_type is CredentialType.CCCD
    assert why in rejection.detail


@pytest.mark.parametrize(
    "text",
    [
        "07920301234|272345678|Uyên|05061993|Nữ|Hà Nội|21042021",  # 11 digits: not a CCCD claim
        "https://example.vn/pass/123",
        "079203012345",  # the bare number, no fields
        "",
    ],
)
def test_codes_that_are_not_cccd_are_raw(text: str) -> None:
    parsed = parse_credential(text.encode("utf-8"))
    assert isinstance(parsed, Credential)
    assert parsed.credential_type is CredentialType.RAW
    assert parsed.subject_id == parsed.code_sha256
    assert parsed.subject_name == ""
    assert parsed.text == text


def test_binary_code_is_raw_without_text() -> None:
    parsed = parse_credential(b"\xff\xfe\x00binary")
    assert isinstance(parsed, Credential)
    assert parsed.credential_type is CredentialType.RAW
    assert parsed.text is None
    assert parsed.code_length == 9


@pytest.mark.parametrize("name", ["H'Hen Niê", "Y-Ngông Niê Kdăm", "Ksor H’Ble", "Lê Văn A."])
def test_names_with_apostrophes_hyphens_and_full_stops_are_kept(name: str) -> None:
    text = f"079203012345|272345678|{name}|05061993|Nữ|Đắk Lắk|21042021"
    assert cccd(text).subject_name == name


def test_a_rejection_quotes_the_card_on_one_printable_line() -> None:
    rejection = rejected("079203012345|27234\r\nINFO ok|Uyên|05061993|Nữ|Hà Nội|21042021")

    assert rejection.detail.isprintable()
    assert "\\r\\n" in rejection.detail  # shown as escapes, so the reason is still readable


@given(st.binary(max_size=2953))
def test_any_bytes_give_a_credential_or_a_rejection(data: bytes) -> None:
    parsed = parse_credential(data)
    assert isinstance(parsed, Credential | Rejection)
    assert parsed.code_length == len(data)
    if isinstance(parsed, Rejection):
        assert parsed.detail.isprintable()


@given(st.text(max_size=300))
def test_any_text_after_a_cccd_number_never_raises(tail: str) -> None:
    parsed = parse_credential(("001099012345|" + tail).encode("utf-8"))
    assert isinstance(parsed, Credential | Rejection)
