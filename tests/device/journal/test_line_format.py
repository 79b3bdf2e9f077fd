"""The journal's line format: a whole state made one document at a time is the same line."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from device.journal.line_format import decode_line, encode_line, encode_line_in_pieces

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)
DOCS = st.dictionaries(st.text(), JSON_VALUES, max_size=4)
TABLES = st.dictionaries(
    st.text(min_size=1),
    st.dictionaries(st.integers(min_value=1).map(str), DOCS, max_size=5),
    max_size=3,
)


@given(TABLES)
def test_a_state_made_in_pieces_is_byte_for_byte_the_line_made_at_once(
    tables: dict[str, dict[str, Any]],
) -> None:
    line = encode_line_in_pieces(tables)
    assert line == encode_line(tables)
    assert decode_line(line.rstrip(b"\n")) == tables


def test_vietnamese_text_and_an_empty_table_keep_their_bytes() -> None:
    tables = {"outbox": {"1": {"name": "Nguyễn Thị Thu Uyên", "seq": 1}}, "seq": {}}
    assert encode_line_in_pieces(tables) == encode_line(tables)
    assert "Nguyễn".encode() in encode_line_in_pieces(tables)
