"""What the text fields of a message may hold, and how untrusted text is shown in a log line.

Text is refused, never altered: a name is stored exactly as the card encoded it (NFC or not), so
the same card always gives the same bytes, and a reader can trust that what it got is what was
sent. The rules refuse what no honest sender produces and what lets a value pose as something
else on a screen or in a log:

- control characters (C0, DEL, C1): NUL breaks PostgreSQL text and C strings, CR/LF start a fake
  log line;
- format characters, bidi controls above all (U+202E turns "gate" into "etag" on screen, the
  "Trojan Source" trick);
- lone surrogates: JSON can spell them ("\\ud800") but no database can store them as UTF-8;
- private-use and unassigned code points, line and paragraph separators (U+2028, U+2029).

A name is stricter still: letters, combining marks, spaces and the apostrophes, hyphens and full
stop of names such as "H'Hen Niê" or "Y-Ngông". So a name can never hold markup (`<script>`) nor
start a spreadsheet formula (`=HYPERLINK(`).

A raw code's text is data of any shape (a URL, a vCard over several lines, markup): it keeps
TAB, LF and CR, and refuses only other controls, lone surrogates and bidi controls. Whoever
shows it must escape it for their medium: the CSV export defuses formulas, HTML escapes markup,
a log line goes through `printable`.

Device and collector import these rules, so a gate never builds a message the collector refuses.
"""

from __future__ import annotations

import re
import unicodedata

NAME_MAX_CHARS = 200
PLAIN_TEXT_MAX_CHARS = 200
CODE_TEXT_MAX_CHARS = 8192

BIDI_CONTROLS = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT MARK, RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2066\u2067\u2068\u2069"  # LRI, RLI, FSI, PDI
)
# Categories no plain text holds: controls, format, surrogates, private use, unassigned, and the
# line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAME_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Zs"})
_NAME_PUNCTUATION = frozenset("'\u2019-\u2010.")  # ' ’ - ‐ .
_CODE_TEXT_REFUSED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + "".join(sorted(BIDI_CONTROLS)) + "]"
)
_ESCAPE_LIMIT_MARK = "…"


def _name_characters_in(*blocks: tuple[int, int]) -> str:
    """Every character of these code point ranges that a name may hold, as a regex class body."""
    allowed = [
        chr(point)
        for first, last in blocks
        for point in range(first, last + 1)
        if chr(point) in _NAME_PUNCTUATION or unicodedata.category(chr(point)) in _NAME_CATEGORIES
    ]
    return "".join(re.escape(ch) for ch in allowed)


# The names of nearly every card, at C speed: the characters of the Latin blocks (Vietnamese's
# precomposed letters among them, U+1E00-U+1EFF) and the combining marks that a name may hold,
# worked out from the very rule below when the module loads. A name with any other character
# goes through the rule itself, character by character: the verdict is the same either way.
_COMMON_NAME = re.compile(
    "["
    + _name_characters_in((0x0020, 0x024F), (0x0300, 0x036F), (0x1E00, 0x1EFF), (0x2010, 0x2019))
    + "]*"
)


def name_problem(text: str) -> str | None:
    """Why `text` cannot be a person's name on the wire, or None when it can ("" can)."""
    if len(text) > NAME_MAX_CHARS:
        return f"is longer than {NAME_MAX_CHARS} characters"
    if _COMMON_NAME.fullmatch(text):
        return None
    for ch in text:
        if ch in _NAME_PUNCTUATION:
            continue
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES:
            return f"holds control or format characters ({_code_point(ch)})"
        if category not in _NAME_CATEGORIES:
            return f"holds {_code_point(ch)}: a name holds letters, marks, spaces and ' ’ - . only"
    return None


def plain_text_problem(text: str, max_chars: int = PLAIN_TEXT_MAX_CHARS) -> str | None:
    """Why `text` cannot be a one-line label (site id, version, fault), or None when it can."""
    if len(text) > max_chars:
        return f"is longer than {max_chars} characters"
    if text.isprintable():  # the common case, at C speed
        return None
    for ch in text:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return f"holds control or format characters ({_code_point(ch)})"
    return None  # only spaces other than U+0020, which isprintable() counts out


def code_text_problem(text: str) -> str | None:
    """Why `text` cannot be a raw code's text on the wire, or None when it can."""
    if len(text) > CODE_TEXT_MAX_CHARS:
        return f"is longer than {CODE_TEXT_MAX_CHARS} characters"
    found = _CODE_TEXT_REFUSED.search(text)
    if found is not None:
        return f"holds a control, bidi or surrogate character ({_code_point(found.group())})"
    return None


def printable(text: str | bytes, limit: int = 200) -> str:
    """Untrusted text as part of one log line: at most `limit` characters of it, and every
    character that could end the line, reorder it or hide in it written as an escape.

    Escapes follow Python's repr (\\n, \\x1b, \\u202e); a backslash is doubled, so an escape
    in the output always means the character was there. Bytes that are not UTF-8 show as \\xNN.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="surrogateescape")
    clipped = text[:limit]
    if not (clipped.isprintable() and "\\" not in clipped):
        clipped = "".join(_escaped(ch) for ch in clipped)
    if len(text) > limit:
        clipped += f"{_ESCAPE_LIMIT_MARK}(+{len(text) - limit} chars)"
    return clipped


def _escaped(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():
        return ch
    if "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return repr(ch)[1:-1]  # non-printable: repr writes \n, \x1b, \u202e...


def _code_point(ch: str) -> str:
    return f"U+{ord(ch):04X}"
