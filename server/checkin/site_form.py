"""What a site's check-in page says and asks (issue 18), set per site in server.toml:

    [checkin.sites.hq]
    consent_vi = "Công ty X lưu họ tên và số điện thoại để ..."   # the site's own words
    consent_en = "Company X keeps ..."                            # optional: else the Vietnamese
    health_questions = false                                      # the default set not asked
    [[checkin.sites.hq.questions]]                                # up to 5 yes/no questions
    vi = "Bạn có mang theo vật dụng dễ cháy không?"
    en = "Are you carrying anything flammable?"

A site with no section (or a key left out) keeps the defaults: the page's own consent words and
the default Vietnamese health questions (declaration.py's HEALTH_QUESTIONS). The site's own
questions follow the default ones, their form fields `health_site1` ... `health_site5`; the
answers are kept in the entry's code text in the order asked. Every text is plain text: the
template escapes it; a blank line in a consent starts a new paragraph.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.checkin.declaration import HEALTH_QUESTIONS

MAX_SITE_QUESTIONS = 5
QUESTION_MAX_CHARS = 300
CONSENT_MAX_CHARS = 2000
SITE_QUESTION_PREFIX = "site"  # the own questions' keys: site1 ... site5


def _plain_text(text: str, *, lines: bool) -> str:
    """Stripped; no control characters (newlines allowed in a consent, not in a question)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf") and not (lines and ch == "\n"):
            raise ValueError(f"holds a control character (U+{ord(ch):04X}); write plain text")
    if not text:
        raise ValueError("is empty; leave the key out to keep the default")
    return text


class SiteQuestion(BaseModel):
    """One yes/no question of the site's own: Vietnamese, and English (else the Vietnamese)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vi: str = Field(max_length=QUESTION_MAX_CHARS, description="the question in Vietnamese")
    en: str | None = Field(None, max_length=QUESTION_MAX_CHARS, description="in English")

    @field_validator("vi", "en")
    @classmethod
    def _text(cls, text: str | None) -> str | None:
        return None if text is None else _plain_text(text, lines=False)


class SiteCheckin(BaseModel):
    """[checkin.sites.SITE]: the site's consent text and questions; a key left out: the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consent_vi: str | None = Field(
        None, max_length=CONSENT_MAX_CHARS, description="what is kept, why, how long (Vietnamese)"
    )
    consent_en: str | None = Field(
        None, max_length=CONSENT_MAX_CHARS, description="the same in English (else Vietnamese)"
    )
    health_questions: bool = Field(True, description="ask the default health questions")
    questions: tuple[SiteQuestion, ...] = Field(
        (), max_length=MAX_SITE_QUESTIONS, description="the site's own yes/no questions (≤ 5)"
    )

    @field_validator("consent_vi", "consent_en")
    @classmethod
    def _consent(cls, text: str | None) -> str | None:
        return None if text is None else _plain_text(text, lines=True)


DEFAULT_SITE = SiteCheckin()


@dataclass(frozen=True)
class PageForm:
    """What one site's page shows: the questions' keys (the form's `health_KEY` fields) and
    texts in the page's language, and the site's consent as paragraphs (() for the default)."""

    questions: tuple[str, ...]
    texts: Mapping[str, str]
    consent: tuple[str, ...]
    default_health: bool


def asked_questions(site: SiteCheckin) -> tuple[str, ...]:
    """The keys of the questions asked, in order: the default set (if asked), then the site's."""
    own = tuple(f"{SITE_QUESTION_PREFIX}{n}" for n in range(1, len(site.questions) + 1))
    return (HEALTH_QUESTIONS if site.health_questions else ()) + own


def page_form(site: SiteCheckin, lang: str, words: Mapping[str, str]) -> PageForm:
    texts = {key: words[f"health.{key}"] for key in HEALTH_QUESTIONS}
    for n, question in enumerate(site.questions, start=1):
        texts[f"{SITE_QUESTION_PREFIX}{n}"] = (question.en if lang == "en" else None) or question.vi
    consent = (site.consent_en if lang == "en" else None) or site.consent_vi or ""
    paragraphs = tuple(p.strip() for p in consent.split("\n\n") if p.strip())
    return PageForm(asked_questions(site), texts, paragraphs, site.health_questions)
