"""A site's own consent text and questions on the check-in page (server.toml's
[checkin.sites.SITE], server/checkin/site_form.py): shown escaped, asked and kept in order; a
site without them keeps the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import URL

from protocol.verdicts import Direction
from server.accounts.passwords import PasswordHasher
from server.checkin.declaration import HEALTH_QUESTIONS
from server.checkin.site_form import SiteCheckin, SiteQuestion, asked_questions, page_form
from server.checkin.words import words
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.locations.records import Location, Locations
from server.store.database import Store
from tests.server.checkin.test_page import PHONE, check_in, path_of
from tests.support.web import BACKENDS, START, MovableClock, both_backends

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

HQ = SiteCheckin(
    consent_vi="Công ty <b>X</b> lưu họ tên & số điện thoại.\n\nHỏi phòng nhân sự.",
    consent_en="Company <b>X</b> keeps your name & phone.",
    health_questions=False,
    questions=(
        SiteQuestion(vi="Bạn mang theo <script>vật dễ cháy</script>?", en="Anything flammable?"),
        SiteQuestion(vi="Bạn đến giao hàng?"),
    ),
)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends(request, tmp_path)


@pytest.fixture
def client(store: Store, clock: MovableClock) -> Iterator[TestClient]:
    app = create_web_app(
        store,
        WebSettings(checkin_sites={"hq": HQ}),
        clock=clock,
        monotonic=clock.monotonic,
        hasher=PasswordHasher(n=2**12, p=1),
    )
    with TestClient(app) as test_client:
        yield test_client


def place(store: Store, site_id: str) -> Location:
    return Locations(store.engine).add("Kho", site_id=site_id, direction=Direction.IN, now=START)


def test_the_sites_consent_and_questions_are_shown_escaped(
    client: TestClient, store: Store
) -> None:
    text = client.get(path_of(place(store, "hq"))).text
    assert "Công ty &lt;b&gt;X&lt;/b&gt; lưu họ tên &amp; số điện thoại." in text
    assert text.count('class="site-consent"') == 2, "a blank line starts a paragraph"
    assert "<b>X</b>" not in text and "<script" not in text
    assert "&lt;script&gt;vật dễ cháy&lt;/script&gt;" in text and "Bạn đến giao hàng?" in text
    assert "Câu hỏi của cơ sở" in text
    assert "Khai báo y tế" not in text and "health_symptoms" not in text
    assert words("vi")["consent.what"] not in text
    english = client.get(path_of(place(store, "hq")) + "?lang=en").text
    assert "Company &lt;b&gt;X&lt;/b&gt; keeps" in english and "Anything flammable?" in english
    assert "Bạn đến giao hàng?" in english, "no English: the Vietnamese"


def test_the_sites_questions_are_required_and_kept_in_order(
    client: TestClient, store: Store
) -> None:
    path = path_of(place(store, "hq"))
    unanswered = check_in(client, path, health_site1="no")
    assert unanswered.status_code == 400 and store.count_entries() == 0
    answer = check_in(client, path, health_site1="no", health_site2="yes")
    assert answer.status_code == 200, answer.text
    [entry] = store.entries()
    assert entry.code_text is not None and entry.code_text.startswith("health=n,y tel=+84")


def test_another_site_keeps_the_defaults(client: TestClient, store: Store) -> None:
    path = path_of(place(store, "branch"))
    text = client.get(path).text
    assert "Khai báo y tế" in text and words("vi")["consent.what"] in text
    assert "site-consent" not in text and "health_site1" not in text
    assert check_in(client, path, phone=PHONE).status_code == 200


def test_the_model_refuses_what_a_page_cannot_show() -> None:
    assert asked_questions(SiteCheckin()) == HEALTH_QUESTIONS
    assert asked_questions(HQ) == ("site1", "site2")
    form = page_form(SiteCheckin(questions=(SiteQuestion(vi="Có?"),)), "en", words("en"))
    assert form.questions == (*HEALTH_QUESTIONS, "site1") and form.consent == ()
    for bad in (
        {"questions": [{"vi": f"Câu {n}?"} for n in range(6)]},
        {"questions": [{"vi": "một\ndòng"}]},
        {"questions": [{"en": "no Vietnamese"}]},
        {"consent_vi": "  "},
        {"consent_vi": "x" * 2001},
        {"health_question": False},
    ):
        with pytest.raises(ValidationError):
            SiteCheckin.model_validate(bad)
