"""Vietnamese and English for the dashboard: one catalogue per language, and dates in the site's
time zone.

Every visible string goes through a `Translator` (`t("fleet.title")`), so a page can be read in
either language and a missing translation shows up in one test (both catalogues have the same
keys). A translation is plain text: values put into it are escaped by Jinja's autoescape like
any other string, so a gate's name or a QR code's text can never become markup through `t`.

Dates are stored in UTC and shown in the site's time zone (zoneinfo), in the form each language
expects: 26/11/2026 08:12 in Vietnamese, 2026-11-26 08:12 in English.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.clock import in_zone
from server.dashboard.i18n.en import MESSAGES as ENGLISH
from server.dashboard.i18n.vi import MESSAGES as VIETNAMESE

LANGUAGES: tuple[str, ...] = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}  # each in its own language, never translated
LANGUAGE_COOKIE = "gatescan_lang"  # the choice of someone not logged in (the login page)
CATALOGUES: dict[str, dict[str, str]] = {"vi": VIETNAMESE, "en": ENGLISH}

# The formatter's methods are named after what they write (datetime, date, time), which hides
# the types inside its class body: these names keep the annotations readable.
Moment = datetime
Day = date

_DATE_FORMATS = {"vi": "%d/%m/%Y", "en": "%Y-%m-%d"}
_DURATION_UNITS = ((60, 1, "time.seconds"), (3600, 60, "time.minutes"), (86400, 3600, "time.hours"))


def supported_language(lang: str | None) -> str | None:
    """`lang` if the dashboard speaks it ("vi", "en", also "en-US" -> "en"), else None."""
    if not lang:
        return None
    base = lang.strip().lower().replace("_", "-").split("-")[0]
    return base if base in LANGUAGES else None


def choose_language(
    *,
    user_language: str | None = None,
    cookie: str | None = None,
    default: str = DEFAULT_LANGUAGE,
) -> str:
    """The user's own choice first, then the one made on the login page, then the site's.

    The browser's Accept-Language is not consulted: the site decides its default (a Vietnamese
    site shows Vietnamese to a guard whose phone happens to be set to English).
    """
    return (
        supported_language(user_language)
        or supported_language(cookie)
        or supported_language(default)
        or DEFAULT_LANGUAGE
    )


class Translator:
    """`t(key, **values)`: the text for `key` in one language, with `{name}` fields filled in.

    A key missing from this language falls back to English, then to the key itself, so a page
    never fails to render over a missing word (the catalogue test catches it instead).
    """

    def __init__(self, lang: str) -> None:
        self.lang = supported_language(lang) or DEFAULT_LANGUAGE
        self._messages = CATALOGUES[self.lang]

    def __call__(self, key: str, **values: Any) -> str:
        text = self._messages.get(key) or ENGLISH.get(key) or key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self._messages


def translator(lang: str) -> Translator:
    return Translator(lang)


@dataclass(frozen=True)
class DateFormatter:
    """Dates and times in the site's time zone, written as the reader's language does."""

    tz: ZoneInfo
    lang: str

    def local(self, value: Moment) -> Moment:
        return in_zone(value, self.tz)

    def datetime(self, value: Moment | None) -> str:
        if value is None:
            return "—"
        return self.local(value).strftime(f"{_DATE_FORMATS[self.lang]} %H:%M:%S")

    def time(self, value: Moment | None) -> str:
        return "—" if value is None else self.local(value).strftime("%H:%M:%S")

    def date(self, value: Day | Moment) -> str:
        if isinstance(value, Moment):
            value = self.local(value).date()
        return value.strftime(_DATE_FORMATS[self.lang])

    def duration(self, seconds: float) -> str:
        """A length of time in its largest whole unit: "5 giây", "3 phút" / "5 s", "3 min"."""
        t = Translator(self.lang)
        whole = max(0, int(seconds))
        for limit, unit, key in _DURATION_UNITS:
            if whole < limit:
                return t(key, n=whole // unit)
        return t("time.days", n=whole // 86400)

    def ago(self, value: Moment | None, now: Moment) -> str:
        """How long ago: "3 phút trước" / "3 min ago"."""
        t = Translator(self.lang)
        if value is None:
            return t("time.never")
        return t("time.ago", duration=self.duration((now - value) / timedelta(seconds=1)))

    def input_value(self, value: Moment | None) -> str:
        """The value of an <input type="datetime-local">: local time, minutes."""
        return "" if value is None else self.local(value).strftime("%Y-%m-%dT%H:%M")


def parse_local_datetime(text: str | None, tz: ZoneInfo) -> datetime | None:
    """An <input type="datetime-local"> value (site time) as an aware datetime; None if empty
    or malformed (a filter that cannot be read is no filter, and the form shows it empty)."""
    if not text:
        return None
    try:
        naive = datetime.fromisoformat(text.strip())
        local = naive.replace(tzinfo=tz) if naive.tzinfo is None else naive
        local.astimezone(UTC)  # year 1 or 9999 near a zone's edge has no UTC: no filter either
    except (ValueError, OverflowError):
        return None
    return local


def i18n_context(lang: str, site_timezone: str | ZoneInfo) -> dict[str, Any]:
    """What every template needs for words and dates: `t`, `lang`, `fmt`, `languages`."""
    tz = site_timezone if isinstance(site_timezone, ZoneInfo) else ZoneInfo(site_timezone)
    t = Translator(lang)
    return {
        "t": t,
        "lang": t.lang,
        "fmt": DateFormatter(tz=tz, lang=t.lang),
        "languages": LANGUAGE_NAMES,
    }
