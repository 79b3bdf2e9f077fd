"""CCCD parsing (both variants, bad IDs, dates, Vietnamese names) and raw codes."""

import hashlib
import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.verdict import credentials
from device.verdict.credentials import Credential, RefusedCode, parse_credential
from protocol.text import name_problem
from protocol.verdicts import CredentialType, Reason

SEVEN = (
    "079193012345|272345678|Nguyễn Thị Thu Uyên|05061993|Nữ"
    "|Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội|21042021"
)
SIX = "001090012345|Trần Văn Đức|01011990|Nam|Thôn Đông, Xã Yên Sở, Hoài Đức, Hà Nội|15082021"


def cccd(text: str) -> Credential:
    parsed = parse_credential(text.encode("utf-8"))
    assert isinstance(parsed, Credential), parsed
    assert parsed.card is not None
    return parsed


def rejected(text: str) -> RefusedCode:
    parsed = parse_credential(text.encode("utf-8"))
    assert isinstance(parsed, RefusedCode), parsed
    return parsed


def test_seven_field_card_keeps_every_field_exactly() -> None:
    parsed = cccd(SEVEN)
    card = parsed.card
    assert card is not None
    assert parsed.credential_type is CredentialType.CCCD
    assert parsed.subject_id == "079193012345"
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
    parsed = cccd("001090012345||Lý Ơn|01011990|Nam|Hà Nội|15082021")
    assert parsed.subject_name == "Lý Ơn"


def test_trailing_newline_and_extra_fields_are_tolerated() -> None:
    assert cccd(SEVEN + "\n").subject_id == "079193012345"
    assert cccd(SEVEN + "|extra").subject_name == "Nguyễn Thị Thu Uyên"


def test_digest_and_length_are_of_the_exact_bytes() -> None:
    data = SEVEN.encode("utf-8")
    parsed = cccd(SEVEN)
    assert parsed.code_sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.code_length == len(data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("079193012345|272345678|Uyên|31021993|Nữ|Hà Nội|21042021", "not a calendar date"),
        ("079193012345|272345678|Uyên|5061993|Nữ|Hà Nội|21042021", "not ddmmyyyy"),
        ("079193012345|272345678|Uyên|05061993|Nữ|Hà Nội|2104202x", "not ddmmyyyy"),
        ("079193012345|27234567|Uyên|05061993|Nữ|Hà Nội|21042021", "neither empty nor 9 digits"),
        ("079193012345|272345678||05061993|Nữ|Hà Nội|21042021", "name is empty"),
        ("079193012345|272345678|Uyên|05061993|Nữ|Hà Nội|21041990", "before the date of birth"),
        ("079193012345|Uyên|05061993|Nữ", "4 fields"),
        ("079193012345|272345678|Uy\u202eên|05061993|Nữ|Hà Nội|21042021", "control or format"),
        ("079193012345|272345678|Uy\x00ên|05061993|Nữ|Hà Nội|21042021", "control or format"),
        ("079193012345|272345678|Uyên|05061893|Nữ|Hà Nội|21042021", "before 1900"),
        ("099203012345|272345678|Uyên|05061993|Nữ|Hà Nội|21042021", "no province code"),
        ("000000000000|272345678|Uyên|05061993|Nữ|Hà Nội|21042021", "no province code"),
        ("079193012345|272345678|<script>x</script>|05061993|Nữ|Hà Nội|21042021", "U+003C"),
        ('079193012345|272345678|=HYPERLINK("x")|05061993|Nữ|Hà Nội|21042021', "U+003D"),
        ("079193012345|272345678|Uyên 2|05061993|Nữ|Hà Nội|21042021", "U+0032"),
        ("079193012345|272345678|Uyên|05061993|Nữ|Hà\nNội|21042021", "control or format"),
        ("079193012345|272345678|Uyên|05061993|N\u2028ữ|Hà Nội|21042021", "control or format"),
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
        "079193012345",  # the bare number, no fields
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
    text = f"079193012345|272345678|{name}|05061993|Nữ|Đắk Lắk|21042021"
    assert cccd(text).subject_name == name


def test_a_rejection_is_one_printable_line_that_quotes_nothing_of_the_card() -> None:
    rejection = rejected("079193012345|27234\r\nINFO ok|Uyên|05061993|Nữ|Hà Nội|21042021")

    assert rejection.detail.isprintable()
    assert "INFO ok" not in rejection.detail and "27234" not in rejection.detail


@given(st.binary(max_size=2953))
def test_any_bytes_give_a_credential_or_a_rejection(data: bytes) -> None:
    parsed = parse_credential(data)
    assert isinstance(parsed, Credential | RefusedCode)
    assert parsed.code_length == len(data)
    if isinstance(parsed, RefusedCode):
        assert parsed.detail.isprintable()


@given(st.text(max_size=300))
def test_any_text_after_a_cccd_number_never_raises(tail: str) -> None:
    parsed = parse_credential(("001099012345|" + tail).encode("utf-8"))
    assert isinstance(parsed, Credential | RefusedCode)


# --- the number's century/gender and year digits against the card's fields ----------------------

GENDER_SPELLINGS = {0: ["Nam", "NAM", "nam"], 1: ["Nữ", "NỮ", "nữ", "Nu", "nu", "Nư\u0303"]}


def card_born(day: date, gender: str, century_gender_digit: int) -> str:
    """A 7-field card born on `day`, whose number carries that year and `century_gender_digit`."""
    issued = date(day.year + 20, 1, 1)
    number = f"079{century_gender_digit}{day.year % 100:02d}012345"
    return f"{number}|272345678|Uyên|{day:%d%m%Y}|{gender}|Huế|{issued:%d%m%Y}"


@pytest.mark.parametrize(
    ("digits", "dob", "gender"),
    [
        ("085", "03111985", "Nam"),  # 0: 1900s, male
        ("193", "05061993", "Nữ"),  # 1: 1900s, female
        ("200", "01012000", "Nam"),  # 2: 2000s, male (2000 is the 21st century's first year)
        ("308", "17082008", "nu"),  # 3: 2000s, female, no diacritics
        ("401", "01012101", "NAM"),  # 4: 2100s, male
        ("599", "31122199", "NỮ"),  # 5: 2100s, female
        ("612", "01012212", "nam"),  # 6: 2200s
        ("705", "01012205", "Nu"),  # 7: 2200s
        ("830", "01012330", "Nam"),  # 8: 2300s
        ("999", "01012399", "nữ"),  # 9: 2300s
    ],
)
def test_number_agreeing_with_birth_date_and_gender_is_accepted(
    digits: str, dob: str, gender: str
) -> None:
    text = f"079{digits}012345||Uyên|{dob}|{gender}|Huế|01012400"
    assert cccd(text).subject_id == f"079{digits}012345"


@pytest.mark.parametrize(
    ("text", "why", "not_why"),
    [
        # 2: born in the 2000s, a man; the card says 1993 and Nữ.
        ("079203012345||Uyên|05061993|Nữ|Huế|21042021", "century", "year"),
        ("079203012345||Uyên|05061993|Nữ|Huế|21042021", "gender", "year"),
        ("079194012345||Uyên|05061993|Nữ|Huế|21042021", "another year", "gender"),
        ("079193012345||Uyên|05061993|Nam|Huế|21042021", "gender", "date of birth"),
        ("001099012345|Trần Văn Đức|01011990|Nam|Hà Nội|15082021", "another year", "gender"),
        ("079393012345||Uyên|05061993|nu|Huế|21042021", "century", "gender"),
    ],
)
def test_number_disagreeing_with_the_card_is_invalid_and_says_which_field(
    text: str, why: str, not_why: str
) -> None:
    rejection = rejected(text)
    assert rejection.reason is Reason.INVALID
    assert why in rejection.detail
    assert not_why not in rejection.detail


def test_a_disagreement_is_described_without_the_card_s_values() -> None:
    rejection = rejected("079203012345||Uyên|05061993|Nữ|Huế|21042021")
    for personal in ("1993", "05061993", "93", "Nữ", "Nu", "Uyên", "079203012345"):
        assert personal not in rejection.detail


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("079193012345||Uyên|31021993|Nữ|Huế|21042021", "31021993"),
        ("079193012345||Uyên|5061993|Nữ|Huế|21042021", "5061993"),
        ("079193012345||Uyên|05061993|Nữ|Huế|99992021", "99992021"),
        ("079193012345|12345|Uyên|05061993|Nữ|Huế|21042021", "12345"),
    ],
)
def test_a_malformed_field_is_named_without_quoting_its_value(text: str, value: str) -> None:
    rejection = rejected(text)
    assert rejection.reason is Reason.INVALID
    assert value not in rejection.detail


@pytest.mark.parametrize("gender", ["Khác", "F", "-"])
def test_a_gender_the_parser_does_not_know_is_not_checked(gender: str) -> None:
    assert cccd(f"079193012345||Uyên|05061993|{gender}|Huế|21042021").card is not None


@given(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2399, 12, 31)),
    st.sampled_from([0, 1]),
    st.data(),
)
def test_any_birth_date_and_gender_agree_with_the_number_they_give(
    born: date, parity: int, data: st.DataObject
) -> None:
    digit = (born.year // 100 - 19) * 2 + parity  # 0/1 for the 1900s, 2/3 for the 2000s...
    gender = data.draw(st.sampled_from(GENDER_SPELLINGS[parity]))
    assert isinstance(parse_credential(card_born(born, gender, digit).encode()), Credential)
    other = data.draw(st.sampled_from(GENDER_SPELLINGS[1 - parity]))
    mismatch = parse_credential(card_born(born, other, digit).encode())
    assert isinstance(mismatch, RefusedCode)
    assert mismatch.detail == "cccd: gender disagrees with the ID number's 4th digit"


# --- the fast checks mean exactly what they replace (same verdicts, same details) ---------------

DIGITY = st.text(alphabet=st.sampled_from("0123456789\n\r |a١²"), max_size=14)


@given(DIGITY, st.sampled_from([8, 9, 12]))
def test_the_digit_check_means_what_the_regular_expression_meant(value: str, count: int) -> None:
    regex = re.compile(rf"^[0-9]{{{count}}}$")
    assert credentials._digits(value, count) == (regex.match(value) is not None)


NAMEY = st.text(
    alphabet=st.one_of(
        st.sampled_from(" '’-‐.\u00a0\u0301\u200b\u202e\n<=2"), st.characters(codec="utf-8")
    ),
    max_size=30,
)


@given(NAMEY)
def test_the_fast_name_check_gives_the_protocol_rule_s_answer(name: str) -> None:
    assert credentials._name_problem(name) == name_problem(name)


@given(st.sampled_from(["Nam", "NAM", "nam", "Nữ", "NỮ", "nữ", "Nu", "NU", "nu", "Nư\u0303"]))
def test_the_common_genders_fold_as_the_normalisation_folds_them(gender: str) -> None:
    assert credentials._gender_parity(gender) == {"nam": 0, "nu": 1}[credentials._folded(gender)]


def test_the_digest_is_computed_when_asked_for_and_kept() -> None:
    parsed = cccd(SEVEN)
    assert "code_sha256" not in vars(parsed), "no digest before anyone asks (it is after the light)"
    assert parsed.code_sha256 == hashlib.sha256(SEVEN.encode()).hexdigest()
    assert vars(parsed)["code_sha256"] == parsed.code_sha256
