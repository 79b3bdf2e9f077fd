"""protocol.text: what names, labels and raw code text may hold, and `printable` for log lines."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.text import (
    BIDI_CONTROLS,
    CODE_TEXT_MAX_CHARS,
    NAME_MAX_CHARS,
    code_text_problem,
    name_problem,
    plain_text_problem,
    printable,
)

LINE_BREAKERS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize(
    "name",
    [
        "Nguyễn Thị Thu Uyên",
        unicodedata.normalize("NFD", "Nguyễn Thị Thu Uyên"),  # not altered, not refused
        "H'Hen Niê",
        "Y-Ngông Niê Kdăm",
        "Ksor H’Ble",
        "Mary-Jane O'Neil Jr.",
        "",
    ],
)
def test_real_names_pass_the_name_rule(name: str) -> None:
    assert name_problem(name) is None


def _name_rule_character_by_character(text: str) -> bool:
    """The name rule as documented, one character at a time (no fast path)."""
    allowed = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Zs"}
    return all(ch in "'\u2019-\u2010." or unicodedata.category(ch) in allowed for ch in text)


def test_the_names_fast_path_accepts_no_character_the_rule_refuses() -> None:
    # Every code point, in a Vietnamese name: the verdict is the rule's, fast path or not.
    for point in range(0x110000):
        text = "Uyên " + chr(point)
        assert (name_problem(text) is None) == _name_rule_character_by_character(text), hex(point)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("<script>alert(1)</script>", "U+003C"),
        ('=HYPERLINK("http://x.example")', "U+003D"),
        ("Nguyễn Văn 2", "U+0032"),
        ("Uyên\x00", "control or format"),
        ("Uyên\r\nINFO fake line", "control or format"),
        ("Uy\u202eên", "control or format"),
        ("Uy\u200dên", "control or format"),  # zero-width joiner hides in a name
        ("Uyên\u2028", "control or format"),
        ("Uyên\ud800", "control or format"),
        ("A" * (NAME_MAX_CHARS + 1), "longer than"),
    ],
)
def test_names_holding_controls_markup_formulas_or_digits_are_refused(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize(
    "text",
    [
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Trần Văn Đức\r\nEND:VCARD\r\n",
        "<script>alert(1)</script>",
        '=HYPERLINK("http://x.example","bấm")',
        "col1\tcol2",
        "👩\u200d👩\u200d👧 family",  # ZWJ emoji: a format character, but not a bidi control
        "\ue000 private use",
        "",
    ],
)
def test_raw_code_text_keeps_line_breaks_markup_and_formulas_as_data(text: str) -> None:
    assert code_text_problem(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "a\x00b",
        "\x1b[31mred",
        "a\x7fb",
        "a\x85b",
        "a\ud800b",
        "x" * (CODE_TEXT_MAX_CHARS + 1),
        *(f"gate{ch}etag" for ch in sorted(BIDI_CONTROLS)),
    ],
)
def test_raw_code_text_refuses_other_controls_bidi_and_surrogates(text: str) -> None:
    assert code_text_problem(text) is not None


@pytest.mark.parametrize("label", ["Bến xe Mỹ Đình", "demo-site", "<b>Kho 3</b>", "0.1.0"])
def test_labels_take_any_printable_text(label: str) -> None:
    assert plain_text_problem(label) is None


@pytest.mark.parametrize("label", ["a\tb", "a\nb", "a\u202eb", "a\u2028b", "a\x00b", "x" * 201])
def test_labels_refuse_controls_and_line_breaks(label: str) -> None:
    assert plain_text_problem(label) is not None


@pytest.mark.parametrize("breaker", LINE_BREAKERS)
def test_printable_never_lets_text_break_the_line(breaker: str) -> None:
    shown = printable(f"bad{breaker}2026-01-01 INFO collector: all fine")

    assert len(shown.splitlines()) == 1
    assert breaker not in shown


def test_printable_keeps_vietnamese_and_escapes_controls_like_repr() -> None:
    assert printable("Nguyễn Thị\r\n\x00\u202e") == "Nguyễn Thị\\r\\n\\x00\\u202e"


def test_printable_doubles_backslashes_so_an_escape_is_never_ambiguous() -> None:
    assert printable("\\n") == "\\\\n"
    assert printable("\n") == "\\n"


def test_printable_shows_bytes_that_are_not_utf8_as_hex() -> None:
    assert printable(b"ok \xff\xfe \xc3\xa9") == "ok \\xff\\xfe é"


def test_printable_clips_long_text_and_says_how_much_was_left_out() -> None:
    assert printable("x" * 250, limit=10) == "xxxxxxxxxx…(+240 chars)"


@given(st.one_of(st.text(), st.binary()), st.integers(min_value=0, max_value=300))
def test_printable_output_is_always_one_printable_line(value: str | bytes, limit: int) -> None:
    shown = printable(value, limit)

    assert shown.isprintable()
    assert len(shown.splitlines()) <= 1
