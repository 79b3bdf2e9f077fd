"""QR bytes -> Credential, or a RefusedCode with a reason. Parse, never trust, never raise.

Three kinds of credential exist in v1:

- ``cccd``: the QR code on a Vietnamese chip citizen ID card. Fields are joined by ``|``:
  7-field ``ID(12 digits)|old ID(9 digits or empty)|Full name|DOB ddmmyyyy|Gender|Address|Issue
  date ddmmyyyy``, or the 6-field variant without the old ID. Names and addresses are UTF-8.
- ``pass``: a site's signed pass (protocol/passes.py): 84 bytes beginning with 0xA7, which no
  UTF-8 text begins with. Its layout is checked here (``parse_pass``); its signature, window and
  lists are the policy's (device/verdict/policy.py). Bytes that begin like a pass but break its
  layout are ``invalid``, with no subject id (nothing in them can be trusted).
- ``raw``: any other code. Only its SHA-256 digest and length identify it; its text is kept only
  when the site's config asks for it (``policy.record_raw_text``).

A payload that claims to be a CCCD (12 digits, then ``|``) but breaks the format is rejected with
``invalid`` rather than passed off as a raw code, so a damaged card gets a red light and a reason.

The number itself is ``PPP G YY NNNNNN`` (Circular 07/2016/TT-BCA): the province code, a digit
for the century of birth and the gender (0/1: 1900s male/female, 2/3: 2000s, 4/5: 2100s, 6/7:
2200s, 8/9: 2300s; even is male), the last two digits of the birth year, then a serial. A card
whose date of birth or gender (``Nam``/``Nữ``, any case, with or without diacritics) disagrees
with those digits is ``invalid``; the detail names the field, never the values. A gender the
parser does not know is not checked.
The name must pass the protocol's name rule (protocol/text.py: letters, marks, spaces and
``' ’ - .``; never a control, bidi, markup or formula character), the same rule the collector
applies, so a card the gate accepts is never refused downstream. Text is refused, never altered.
A refused code's detail quotes the card only through ``printable``: it is shown on screens and logs.

Speed: the parse runs between a code's decode and the gate's light, once per showing, when none
of its code is in the CPU's caches (a decode has just run over a megabyte of pixels, and the
thread slept before it). There every distinct piece of machinery touched costs microseconds, so
the checks use plain string methods instead of regular expressions and the gender's common
spellings a dict instead of Unicode normalisation (each with the exact meaning of what it
replaces), and the code's SHA-256, an identifier that no verdict depends on, is computed when it
is first asked for (by the event, after the light), then kept.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from protocol.passes import SignedPass, looks_like_pass, parse_pass
from protocol.rotating_passes import RotatingTail, looks_rotating, split_rotating
from protocol.text import name_problem, plain_text_problem
from protocol.verdicts import CredentialType, Reason

# The first three digits of a CCCD number name the province of birth registration (Circular
# 07/2016/TT-BCA). Provinces merged in 2025 keep their codes on the cards already issued.
_PROVINCES = (
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37,
    38, 40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77,
    79, 80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96,
)  # fmt: skip
PROVINCE_CODES = frozenset(f"{code:03d}" for code in _PROVINCES)
_MAX_NAME = 100
_MAX_ADDRESS = 300
_MAX_GENDER = 10
# The 4th digit's gender, keyed by the gender field with case and diacritics dropped.
_GENDER_PARITY = {"nam": 0, "nu": 1}
# Name characters that are not letters but allowed (protocol.text's rule), deleted before the
# fast check that all the rest are letters.
_NAME_NON_LETTERS = str.maketrans(dict.fromkeys(" '\u2019-\u2010."))


@dataclass(frozen=True)
class CccdCard:
    """The fields printed on a chip citizen ID card, as its QR code carries them."""

    id_number: str
    old_id: str
    full_name: str
    date_of_birth: date
    gender: str
    address: str
    issue_date: date


class _CodeIdentity:
    """The code's exact bytes (`code`), its SHA-256 (computed when first asked for) and length."""

    code: bytes

    @cached_property
    def code_sha256(self) -> str:
        return hashlib.sha256(self.code).hexdigest()

    @property
    def code_length(self) -> int:
        return len(self.code)


@dataclass(frozen=True)
class Credential(_CodeIdentity):
    credential_type: CredentialType
    subject_name: str
    code: bytes = field(repr=False)
    text: str | None  # the code's text when it is valid UTF-8; None for binary codes
    card: CccdCard | None = None
    signed_pass: SignedPass | None = None  # a pass's layout, its signature not yet checked
    rotation: RotatingTail | None = None  # a phone's pass: the step and its code, unchecked

    @property
    def subject_id(self) -> str:
        """The CCCD number, a pass's 16-hex pass id, or the code's SHA-256 for raw codes."""
        if self.card is not None:
            return self.card.id_number
        if self.signed_pass is not None:
            return self.signed_pass.body.pass_id_text()
        return self.code_sha256


@dataclass(frozen=True)
class RefusedCode(_CodeIdentity):
    """The code was read but cannot be accepted as what it claims to be."""

    reason: Reason
    detail: str
    code: bytes = field(repr=False)
    credential_type: CredentialType = CredentialType.RAW
    subject_id: str = ""


ParseResult = Credential | RefusedCode


def parse_credential(data: bytes) -> ParseResult:
    """Classify a code's exact bytes. Never raises, whatever the bytes are."""
    if looks_like_pass(data):
        return _parse_pass(data)
    text = _utf8(data)
    if text is not None and _claims_cccd(text):
        return _parse_cccd(text, data)
    return Credential(credential_type=CredentialType.RAW, subject_name="", code=data, text=text)


def _parse_pass(data: bytes) -> ParseResult:
    rotation = None
    try:
        if looks_rotating(data):
            pass_bytes, rotation = split_rotating(data)
            signed = parse_pass(pass_bytes)
        else:
            signed = parse_pass(data)
    except ValueError as exc:  # PassFormatError, or a field PassBody refuses
        return RefusedCode(
            reason=Reason.INVALID,
            detail=f"pass: {exc}",
            code=data,
            credential_type=CredentialType.PASS,
        )
    return Credential(
        credential_type=CredentialType.PASS,
        subject_name="",
        code=data,
        text=None,
        signed_pass=signed,
        rotation=rotation,
    )


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _claims_cccd(text: str) -> bool:
    return len(text) > 13 and text[12] == "|" and _digits(text[:12], 12)


def _digits(value: str, count: int) -> bool:
    """What `re.match(rf"^[0-9]{{{count}}}$", value)` says: `count` ASCII digits, and the `$`
    also matches before one final newline (kept so that no verdict changes)."""
    head = value[:count]
    return len(head) == count and head.isascii() and head.isdigit() and value[count:] in ("", "\n")


class _Invalid(ValueError):
    pass


def _parse_cccd(text: str, data: bytes) -> ParseResult:
    try:
        card = _cccd_fields(text.rstrip("\r\n").split("|"))
    except _Invalid as exc:
        return RefusedCode(
            reason=Reason.INVALID,
            detail=f"cccd: {exc}",
            code=data,
            credential_type=CredentialType.CCCD,
            subject_id=text[:12],
        )
    return Credential(
        credential_type=CredentialType.CCCD,
        subject_name=card.full_name,
        code=data,
        text=text,
        card=card,
    )


def _cccd_fields(fields: list[str]) -> CccdCard:
    # Some readers and card batches add trailing fields; the first ones keep their meaning.
    if len(fields) >= 7 and (fields[1] == "" or _digits(fields[1], 9)):
        id_number, old_id, name, dob, gender, address, issued = fields[:7]
    elif len(fields) == 6:
        id_number, name, dob, gender, address, issued = fields
        old_id = ""
    elif len(fields) >= 7:
        raise _Invalid("old ID is neither empty nor 9 digits")
    else:
        raise _Invalid(f"{len(fields)} fields; a CCCD code has 6 or 7")
    if id_number[:3] not in PROVINCE_CODES:
        raise _Invalid(f"ID number starts with {id_number[:3]}, which is no province code")
    card = CccdCard(
        id_number=id_number,
        old_id=old_id,
        full_name=_clean_text("name", name, _MAX_NAME, rule=_name_problem),
        date_of_birth=_ddmmyyyy("date of birth", dob),
        gender=_clean_text("gender", gender, _MAX_GENDER),
        address=_clean_text("address", address, _MAX_ADDRESS, required=False),
        issue_date=_ddmmyyyy("issue date", issued),
    )
    if card.issue_date < card.date_of_birth:
        raise _Invalid("issue date is before the date of birth")
    disagreements = _birth_digits_disagreements(card)
    if disagreements:
        raise _Invalid("; ".join(disagreements))
    return card


def _birth_digits_disagreements(card: CccdCard) -> list[str]:
    """Which of the card's fields disagree with the century/gender and year digits of its number.

    Says which field, never its value: the detail reaches logs and screens.
    """
    century_gender, year_digits = int(card.id_number[3]), int(card.id_number[4:6])
    born = card.date_of_birth.year
    found = []
    if born // 100 != 19 + century_gender // 2:
        found.append("date of birth is in another century than the ID number's 4th digit says")
    elif born % 100 != year_digits:
        found.append("date of birth is in another year than the ID number's 5th-6th digits say")
    parity = _gender_parity(card.gender)
    if parity is not None and parity != century_gender % 2:
        found.append("gender disagrees with the ID number's 4th digit")
    return found


def _gender_parity(gender: str) -> int | None:
    """The 4th digit's parity a gender field means; None for a gender the parser does not know."""
    parity = _COMMON_GENDER_PARITY.get(gender, -1)
    return _GENDER_PARITY.get(_folded(gender)) if parity == -1 else parity


def _folded(text: str) -> str:
    """Lower case without diacritics: "Nữ", "NỮ", "Nu" and "nu" all give "nu"."""
    decomposed = unicodedata.normalize("NFD", text.strip().casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _ddmmyyyy(label: str, value: str) -> date:
    if not _digits(value, 8):
        raise _Invalid(f"{label} is not ddmmyyyy")
    try:
        parsed = date(int(value[4:]), int(value[2:4]), int(value[:2]))
    except ValueError:
        raise _Invalid(f"{label} is not a calendar date") from None
    if parsed.year < 1900:
        raise _Invalid(f"{label} is before 1900")
    return parsed


def _clean_text(
    label: str,
    value: str,
    limit: int,
    *,
    required: bool = True,
    rule: Callable[[str], str | None] = plain_text_problem,
) -> str:
    """Keep the text exactly as the card wrote it, but refuse what no card carries."""
    if required and not value.strip():
        raise _Invalid(f"{label} is empty")
    if len(value) > limit:
        raise _Invalid(f"{label} is longer than {limit} characters")
    problem = rule(value)
    if problem is not None:
        raise _Invalid(f"{label} {problem}")
    return value


def _name_problem(name: str) -> str | None:
    """protocol.text's name rule, with a fast yes for a name of letters and the allowed spaces
    and punctuation (`isalpha` is true exactly for the letter categories the rule allows)."""
    if name.translate(_NAME_NON_LETTERS).isalpha():
        return None
    return name_problem(name)


# The spellings cards use, folded once here: a dict lookup instead of a normalisation per scan.
_COMMON_GENDER_PARITY = {
    spelling: _GENDER_PARITY[_folded(spelling)]
    for spelling in ("Nam", "NAM", "nam", "Nữ", "NỮ", "nữ", "Nu", "NU", "nu")
}
