"""What a person declares at a location's poster (issue 18), checked as a gate's input is: a
value parsed once at the edge, refused (never altered) when it breaks a rule, with the reason as
a key of the page's words (words.py) and never the value itself.

    found = read_declaration({"name": "Nguyễn Thị Hà", "phone": "090 123 4567", ...})
    found.declaration.phone            # "+84901234567"
    found.problems                     # {"phone": "phone.invalid", ...}: the form shown again

- name: required; protocol/text.py's name rule (letters with Vietnamese diacritics, marks,
  spaces, ' ’ - .), at most NAME_MAX_CHARS characters; NFC and runs of spaces collapsed first
  (a phone keyboard may type decomposed letters);
- phone: required; Vietnamese formats, separators (space . - ( )) ignored: a mobile 0XXXXXXXXX
  (10 digits), a landline 02XXXXXXXXX (11), or either with +84 / 84 for the leading 0; kept as
  +84...;
- ID number: optional; a CCCD's 12 digits. Given, it is the entry's subject, so a gate's entry of
  the same card and this check-in are one person in tracing and presence;
- the health questions (HEALTH_QUESTIONS, the default set, or the site's, site_form.py): each
  answered yes or no on a check-in; a check-out may leave them unanswered (a one-tap check-out
  of a remembered phone declares no health; its code text says `health=-,-,-`).

Without an ID number the subject is `tel-` and 20 hex digits of HMAC-SHA256 of the phone number
under the site's own secret (the rotating passes' secret, kept in the database only): stable for
one person at one site, and no phone number in an id, a URL or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.text import NAME_MAX_CHARS, name_problem
from protocol.verdicts import Direction

NAME_FORM_MAX = 100  # what the form lets a person type (the wire takes NAME_MAX_CHARS)
# The default health questions (the 2021 declaration's), their keys in words.py; a site may
# leave them out and ask its own (site_form.py).
HEALTH_QUESTIONS: tuple[str, ...] = ("symptoms", "contact", "travel")
ANSWERS = ("no", "yes")

_SEPARATORS = re.compile(r"[\s.\-()]")
_MOBILE = re.compile(r"0([35789][0-9]{8})")
_LANDLINE = re.compile(r"0(2[0-9]{9})")
_INTERNATIONAL = re.compile(r"(?:\+84|0084|84)([35789][0-9]{8}|2[0-9]{9})")
_CCCD = re.compile(r"[0-9]{12}")
_PHONE_ID_PURPOSE = b"gatescan self check-in phone v1\x00"
PHONE_ID_HEX = 20


@dataclass(frozen=True)
class Declaration:
    name: str
    phone: str  # +84 and 9 or 10 digits
    cccd: str  # "" when not given
    health: tuple[str, ...]  # "yes" / "no" ("" on a check-out), in the order asked
    direction: Direction

    def code_text(self) -> str:
        """What the entry keeps beside the name (its `code_text`): the answers, then the phone
        last, so the masked text (the last 4 characters) shows the phone's last 4 digits."""
        answers = ",".join(answer[:1] or "-" for answer in self.health)
        return f"health={answers} tel={self.phone}"

    @property
    def any_yes(self) -> bool:
        return "yes" in self.health


@dataclass(frozen=True)
class Reading:
    declaration: Declaration | None
    problems: dict[str, str]  # field -> the key of the words saying what is wrong
    values: dict[str, str]  # what was sent, to show the form again with it


def normal_name(text: str) -> str:
    """NFC, and runs of spaces made one (only U+0020: any other control is refused after)."""
    return " ".join(part for part in unicodedata.normalize("NFC", text).split(" ") if part)


def normal_phone(text: str) -> str | None:
    """+84 and the number's digits, or None for no Vietnamese phone number."""
    digits = _SEPARATORS.sub("", text)
    found = _MOBILE.fullmatch(digits) or _LANDLINE.fullmatch(digits)
    found = found or _INTERNATIONAL.fullmatch(digits)
    return f"+84{found[1]}" if found else None


def read_declaration(
    form: Mapping[str, str], default: Direction, questions: Sequence[str] = HEALTH_QUESTIONS
) -> Reading:
    values = {key: str(form.get(key, ""))[:300] for key in ("name", "phone", "cccd")}
    problems: dict[str, str] = {}
    name = normal_name(values["name"])
    if not name:
        problems["name"] = "name.missing"
    elif not _is_name(name):
        problems["name"] = "name.invalid"
    phone = normal_phone(values["phone"]) if values["phone"].strip() else None
    if not values["phone"].strip():
        problems["phone"] = "phone.missing"
    elif phone is None:
        problems["phone"] = "phone.invalid"
    cccd = _SEPARATORS.sub("", values["cccd"])
    if cccd and not _CCCD.fullmatch(cccd):
        problems["cccd"] = "cccd.invalid"
    direction = {"in": Direction.IN, "out": Direction.OUT}.get(str(form.get("direction", "")))
    leaving = (direction or default) is Direction.OUT
    health = []
    for question in questions:
        answer = str(form.get(f"health_{question}", ""))
        values[f"health_{question}"] = answer if answer in ANSWERS else ""
        if answer not in ANSWERS:
            if not (leaving and answer == ""):
                problems[f"health_{question}"] = "health.missing"
            answer = ""
        health.append(answer)
    if problems or phone is None:
        return Reading(None, problems, values)
    made = Declaration(name, phone, cccd, tuple(health), direction or default)
    assert len(name) <= NAME_MAX_CHARS
    return Reading(made, {}, values)


def _is_name(name: str) -> bool:
    fits = len(name) <= NAME_FORM_MAX and name_problem(name) is None
    return fits and any(ch.isalpha() for ch in name)


def subject_id(declaration: Declaration, site_secret: bytes) -> str:
    """The entry's subject: the CCCD given, else `tel-` and a keyed hash of the phone."""
    if declaration.cccd:
        return declaration.cccd
    return phone_subject_id(declaration.phone, site_secret)


def phone_subject_id(phone: str, site_secret: bytes) -> str:
    """`tel-` and 20 hex digits of HMAC-SHA256(site secret, phone): the same phone, the same id
    at one site; the phone cannot be read back without the site's secret."""
    digest = hmac.new(site_secret, _PHONE_ID_PURPOSE + phone.encode("ascii"), hashlib.sha256)
    return "tel-" + digest.hexdigest()[:PHONE_ID_HEX]
