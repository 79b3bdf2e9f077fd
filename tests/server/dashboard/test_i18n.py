"""The dashboard's words and dates: both catalogues complete, Vietnamese by default and with its
diacritics, every key a page uses present, dates in the site's time zone."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.dashboard.i18n.translate import (
    CATALOGUES,
    DateFormatter,
    Translator,
    choose_language,
    i18n_context,
    parse_local_datetime,
)
from tests.support.paths import DASHBOARD

SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    vietnamese, english = CATALOGUES["vi"], CATALOGUES["en"]
    assert set(vietnamese) == set(english)
    for key in english:
        assert placeholders(vietnamese[key]) == placeholders(english[key]), key


def test_every_key_a_template_or_page_names_exists() -> None:
    sources = [*DASHBOARD.rglob("*.html"), *DASHBOARD.glob("*.py")]
    used = set()
    for path in sources:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+)["']""", path.read_text()))
    assert len(used) > 100
    assert sorted(used - set(CATALOGUES["vi"])) == []


@pytest.mark.parametrize(
    "key_values",
    [
        ("status.", ["granted", "recorded", "denied"]),
        ("direction.", ["in", "out"]),
        ("credential.", ["cccd", "raw"]),
        ("role.", ["viewer", "manager", "admin", "tracer", "technician"]),
        ("reason.", ["ok", "unknown_format", "invalid", "bad_signature", "expired"]),
        ("reason.", ["not_yet_valid", "revoked", "blocked", "not_allowed", "already_inside"]),
    ],
)
def test_every_value_of_a_closed_set_has_words(key_values: tuple[str, list[str]]) -> None:
    prefix, values = key_values
    for value in values:
        assert f"{prefix}{value}" in CATALOGUES["vi"]
        assert f"{prefix}{value}" in CATALOGUES["en"]


def test_vietnamese_is_the_default_and_keeps_its_diacritics() -> None:
    t = Translator(choose_language())
    assert t.lang == "vi"
    assert t("fleet.title") == "Cổng"
    assert t("fleet.online") == "Đang hoạt động"
    assert t("fleet.offline") == "Ngoại tuyến"
    assert t("occupancy.in") == "Lượt vào"
    assert t("nav.tracing") == "Truy vết tiếp xúc"
    assert t("nav.export") == "Xuất dữ liệu"
    assert t("login.submit") == "Đăng nhập"
    assert t("login.username") == "Tên đăng nhập"
    assert t("login.password") == "Mật khẩu"


def test_a_user_choice_beats_the_login_page_cookie_which_beats_the_site_default() -> None:
    assert choose_language(user_language="en", cookie="vi", default="vi") == "en"
    assert choose_language(user_language=None, cookie="en-US", default="vi") == "en"
    assert choose_language(user_language=None, cookie="fr", default="en") == "en"
    assert choose_language(user_language="xx", cookie=None, default="xx") == "vi"


def test_values_fill_the_placeholders_and_stay_plain_text() -> None:
    t = Translator("en")
    assert t("fleet.flag.fault", faults="<b>camera</b>") == "fault: <b>camera</b>"
    assert not hasattr(t("fleet.title"), "__html__")  # never Markup: Jinja escapes it


def test_an_unknown_key_shows_itself_rather_than_failing_the_page() -> None:
    assert Translator("vi")("no.such.key") == "no.such.key"


def test_times_are_shown_in_the_site_zone_as_each_language_writes_dates() -> None:
    moment = datetime(2026, 11, 26, 17, 12, 28, tzinfo=UTC)  # 00:12 the next day in Saigon
    assert DateFormatter(SAIGON, "vi").datetime(moment) == "27/11/2026 00:12:28"
    assert DateFormatter(SAIGON, "en").datetime(moment) == "2026-11-27 00:12:28"
    assert DateFormatter(SAIGON, "vi").date(moment) == "27/11/2026"
    assert DateFormatter(SAIGON, "vi").datetime(None) == "—"


def test_how_long_ago_in_the_largest_whole_unit() -> None:
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    vi, en = DateFormatter(SAIGON, "vi"), DateFormatter(SAIGON, "en")
    assert vi.ago(now - timedelta(seconds=5), now) == "5 giây trước"
    assert vi.ago(now - timedelta(minutes=3, seconds=59), now) == "3 phút trước"
    assert en.ago(now - timedelta(hours=2), now) == "2 h ago"
    assert en.ago(now - timedelta(days=3), now) == "3 days ago"
    assert vi.ago(None, now) == "chưa bao giờ"


def test_a_date_input_is_read_as_site_time() -> None:
    parsed = parse_local_datetime("2026-11-26T08:00", SAIGON)
    assert parsed == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert parse_local_datetime("", SAIGON) is None
    assert parse_local_datetime("26/11/2026", SAIGON) is None


def test_the_template_context_names_the_language_and_zone() -> None:
    context = i18n_context("en", "Asia/Ho_Chi_Minh")
    assert context["lang"] == "en"
    assert context["fmt"].tz == SAIGON
    assert context["languages"] == {"vi": "Tiếng Việt", "en": "English"}
