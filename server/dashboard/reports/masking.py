"""Masking of personal data on screens and in exports (ID numbers, names, code text).

Masked by default: a person is recognisable to someone who already knows them (the last 4
digits, the first letter of each word of the name), never identifiable to someone who does not.
Unmasking is a role's right and is audited (server/dashboard/reports/entries.py).
"""

from __future__ import annotations

VISIBLE_TAIL = 4
_HIDDEN = "*"


def mask_id(subject_id: str) -> str:
    """An ID number with only its last 4 characters visible: "********6789"."""
    if len(subject_id) <= VISIBLE_TAIL:
        return _HIDDEN * len(subject_id)
    return _HIDDEN * (len(subject_id) - VISIBLE_TAIL) + subject_id[-VISIBLE_TAIL:]


def mask_name(name: str) -> str:
    """Each word of a name reduced to its first letter: "Nguyễn Văn An" -> "N*** V*** A***".

    Always three stars, so the mask does not tell the length of the name either.
    """
    return " ".join(word[0] + _HIDDEN * 3 for word in name.split())


def mask_text(text: str | None) -> str | None:
    """A raw code's text (which may itself hold a pass number or a name): the last 4
    characters after a fixed run of stars, so its length is not told."""
    if text is None:
        return None
    if len(text) <= VISIBLE_TAIL:
        return _HIDDEN * 4
    return _HIDDEN * 4 + text[-VISIBLE_TAIL:]
