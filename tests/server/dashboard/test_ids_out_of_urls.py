"""No ID number or name searched for goes into a page's URL (browser history on a shared PC,
bookmarks, proxy logs): the search forms are POSTed and answered by a redirect to the page by
an opaque handle (`?q=`), bound to the login session. Real SQLite, the real app."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.dashboard.search_handles import SearchHandles
from server.store.database import Store
from tests.support.web import START, Answer, MovableClock, cccd_event, log_in

ALICE, BOB, CAROL = "079203012345", "079190000002", "079190000003"
ALICE_NAME, BOB_NAME = "Nguyễn Thị Ánh Tuyết", "Trần Văn Bình"
MIN = timedelta(minutes=1)
ALICE_VISITS = 60  # more than one page of entries (50)
_URL_ATTRIBUTE = re.compile(r'\b(?:href|action|src|formaction|data-live-src)="([^"]*)"')
_NEXT_FIELD = re.compile(r'name="next" value="([^"]*)"')


@pytest.fixture
def stocked(store: Store) -> Store:
    """Alice at gate-1 every ten minutes (60 times), Bob once five minutes after her first
    visit, Carol at another site."""
    events = [
        cccd_event(n, subject=ALICE, name=ALICE_NAME, ts=START + 10 * n * MIN)
        for n in range(ALICE_VISITS)
    ]
    events.append(cccd_event(100, subject=BOB, name=BOB_NAME, ts=START + 5 * MIN))
    events.append(
        cccd_event(101, subject=CAROL, name="Lê Văn Cường", ts=START, device="b-1", site="branch")
    )
    store.add_events(events, received_at=START)
    return store


@pytest.fixture
def other_client(app: FastAPI) -> Iterator[TestClient]:
    """A second browser on the same dashboard."""
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as test_client:
        yield test_client


def urls_in(page: str) -> list[str]:
    """Every address a page can send the browser to, and where its language switch returns."""
    found = _URL_ATTRIBUTE.findall(page) + _NEXT_FIELD.findall(page)
    return [html.unescape(url) for url in found]


def assert_no_term_in(urls: list[str], *terms: str) -> None:
    for url in urls:
        for term in terms:
            for form in (url, unquote_plus(url)):
                assert term.lower() not in form.lower(), f"{term!r} in {url!r}"


def assert_no_term_in_page(answer: Answer, *terms: str) -> None:
    location = [answer.headers["location"]] if "location" in answer.headers else []
    assert_no_term_in(urls_in(answer.text) + location, *terms)


def redirect_target(answer: Answer, *terms: str) -> str:
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert_no_term_in([location], *terms)
    return location


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def event_ids(page: str) -> set[str]:
    return set(re.findall(r'data-event="([^"]+)"', page))


def search_entries(client: TestClient, csrf: str, **form: str) -> str:
    answer = client.post("/entries/search", data={"csrf_token": csrf, **form})
    return redirect_target(answer, *(form.get("person", ""),) if form.get("person") else ())


# --- the entries page --------------------------------------------------------------------------


def test_a_person_search_redirects_to_a_handle_and_shows_that_person_s_entries(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    target = search_entries(client, csrf, person=ALICE, site="hq", verdict="recorded")
    assert target.startswith("/entries?")
    params = query_of(target)
    assert params["site"] == ["hq"] and params["verdict"] == ["recorded"]  # nothing personal
    assert "person" not in params and len(params["q"][0]) >= 20

    page = client.get(target)
    assert page.status_code == 200
    assert_no_term_in_page(page, ALICE)
    assert f"{ALICE_VISITS} " in page.text  # the count: Alice's entries only
    shown = event_ids(page.text)
    assert len(shown) == 50 and all(event.startswith("evt-gate-1-0000") for event in shown)
    assert "evt-gate-1-000100" not in shown  # not Bob
    assert f'value="{ALICE}"' in page.text  # the form still shows what was searched for
    assert "data-live-src" not in page.text  # a person search is not polled (audit per look)
    (row,) = app.state.web.audit.rows(action="search")
    assert (row.actor, row.subject) == ("manager", ALICE)


def test_a_search_by_name_keeps_the_name_out_of_every_url(
    client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    target = search_entries(client, csrf, person=ALICE_NAME)
    page = client.get(target)
    assert page.status_code == 200
    assert_no_term_in_page(page, ALICE_NAME, "Tuyết", "Tuy%E1%BA%BFt")
    assert len(event_ids(page.text)) == 50


def test_pagination_unmasking_and_the_export_link_keep_the_filter_by_its_handle(
    client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    target = search_entries(client, csrf, person=ALICE)
    handle = query_of(target)["q"][0]
    first = client.get(target)
    urls = urls_in(first.text)
    (next_page,) = [url for url in urls if "page=2" in url]
    assert query_of(next_page)["q"] == [handle]
    assert f"/export?q={handle}" in urls

    second = client.get(next_page)
    assert second.status_code == 200
    assert_no_term_in_page(second, ALICE)
    assert len(event_ids(second.text)) == ALICE_VISITS - 50
    assert event_ids(second.text).isdisjoint(event_ids(first.text))
    assert "evt-gate-1-000100" not in second.text

    # The unmask form carries the handle, not the term, and unmasks only Alice's entries.
    unmask_form = re.search(
        r'<form method="post" action="/entries/unmask".*?</form>', first.text, re.S
    )
    assert unmask_form is not None
    assert f'name="q" value="{handle}"' in unmask_form.group(0)
    assert ALICE not in unmask_form.group(0) and 'name="person"' not in unmask_form.group(0)
    unmasked = client.post("/entries/unmask", data={"csrf_token": csrf, "q": handle, "page": "1"})
    assert unmasked.status_code == 200
    assert ALICE in unmasked.text and BOB not in unmasked.text  # shown, as the page's content
    assert_no_term_in_page(unmasked, ALICE)  # ...but in no link: the rows link by handle
    row_links = [url for url in urls_in(unmasked.text) if url.startswith("/tracing?q=")]
    assert row_links  # each unmasked ID number links to its tracing, by a handle

    traced = client.get(row_links[0])
    assert traced.status_code == 200
    assert f'<tr data-subject="{BOB}">' in traced.text  # Alice's contact: the row was Alice's


def test_an_old_bookmark_with_person_still_works_but_its_links_use_a_handle(
    client: TestClient, stocked: Store
) -> None:
    log_in(client, "manager")
    bookmark = client.get(f"/entries?person={ALICE}&site=hq")
    target = redirect_target(bookmark, ALICE)  # to the same page by a handle: the address bar
    assert target.startswith("/entries?") and "site=hq" in target  # no longer holds the ID
    page = client.get(target)
    assert page.status_code == 200
    assert len(event_ids(page.text)) == 50
    assert_no_term_in_page(page, ALICE)
    assert any("q=" in url and "site=hq" in url for url in urls_in(page.text))


# --- contact tracing ---------------------------------------------------------------------------


def _trace(client: TestClient, csrf: str, subject: str, **form: str) -> Answer:
    answer = client.post("/tracing/search", data={"csrf_token": csrf, "subject": subject, **form})
    target = redirect_target(answer, subject)
    assert target.startswith("/tracing?q=")
    page = client.get(target)
    assert page.status_code == 200, page.text
    return page


def test_a_tracing_search_redirects_to_a_handle_and_its_links_hold_no_id(
    client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    answer = client.post(
        "/tracing/search",
        data={"csrf_token": csrf, "subject": ALICE, "window": "10", "since": "2026-03-02T09:00"},
    )
    target = redirect_target(answer, ALICE)
    params = query_of(target)
    assert params["window"] == ["10"] and params["since"] == ["2026-03-02T09:00"]
    page = client.get(target)
    assert page.status_code == 200
    assert_no_term_in_page(page, ALICE, BOB, ALICE_NAME, BOB_NAME)
    assert f'<tr data-subject="{BOB}">' in page.text
    assert "/people/" not in page.text

    # A contact's link goes to their own tracing, by a handle of its own.
    (contact_row,) = re.findall(r'<tr data-subject="[^"]*">.*?</tr>', page.text, re.S)
    (contact_link,) = urls_in(contact_row)
    assert query_of(contact_link)["q"] != params["q"]
    contact = client.get(contact_link)
    assert contact.status_code == 200
    assert f'<tr data-subject="{ALICE}">' in contact.text  # Bob's contact is Alice
    assert_no_term_in_page(contact, ALICE, BOB)


def test_the_tracing_downloads_go_through_the_page_and_are_audited_like_the_api_s(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    page = _trace(client, csrf, ALICE, window="10")
    downloads = [url for url in urls_in(page.text) if url.startswith("/tracing/export?")]
    assert len(downloads) == 2
    assert_no_term_in(downloads, ALICE, BOB)
    (csv_url,) = [url for url in downloads if "format=csv" in url]
    (json_url,) = [url for url in downloads if "format=json" in url]

    exported = client.get(csv_url)
    assert exported.status_code == 200
    assert exported.content.startswith(b"\xef\xbb\xbf")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    contacts = {(row["contact_subject_id"], row["contact_subject_name"]) for row in rows}
    assert contacts - {("", "")} == {(BOB, BOB_NAME)}  # the other visits: nobody near
    assert len({row["visit_event_id"] for row in rows}) == ALICE_VISITS  # Alice's visits
    (audit,) = app.state.web.audit.rows(action="export")
    assert (audit.actor, audit.subject) == ("manager", ALICE)
    assert audit.details == {"kind": "tracing", "format": "csv", "window_min": 10}

    as_json = client.get(json_url)
    assert as_json.status_code == 200
    assert json.loads(as_json.content)  # the API's own JSON
    assert len(app.state.web.audit.rows(action="export")) == 2
    assert len(app.state.web.audit.rows(action="trace")) == 3  # the page and both downloads


# --- the export page ---------------------------------------------------------------------------


def test_the_export_page_s_filter_and_downloads_use_the_handle(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    answer = client.post("/export/search", data={"csrf_token": csrf, "person": ALICE})
    target = redirect_target(answer, ALICE)
    assert target.startswith("/export?q=")
    page = client.get(target)
    assert page.status_code == 200
    assert_no_term_in_page(page, ALICE)
    assert 'action="/export/search"' in page.text
    downloads = [url for url in urls_in(page.text) if url.startswith("/export/download?")]
    assert len(downloads) == 4  # CSV and JSON, masked and (manager) unmasked

    masked = client.get(next(url for url in downloads if "unmask" not in url))
    assert masked.status_code == 200
    rows = list(csv.DictReader(io.StringIO(masked.content.decode("utf-8-sig"))))
    assert len(rows) == ALICE_VISITS
    assert {row["subject_id"] for row in rows} == {"********2345"}
    unmasked_url = next(url for url in downloads if "unmask=true" in url and "format=csv" in url)
    unmasked = list(
        csv.DictReader(io.StringIO(client.get(unmasked_url).content.decode("utf-8-sig")))
    )
    assert {row["subject_id"] for row in unmasked} == {ALICE}
    exports = app.state.web.audit.rows(action="export")
    assert [(row.subject, row.details["unmasked"]) for row in exports] == [
        (ALICE, True),
        (ALICE, False),
    ]


# --- a handle is the session's own -------------------------------------------------------------


def test_another_user_s_handle_shows_the_expired_message_and_no_data(
    client: TestClient, other_client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    entries = search_entries(client, csrf, person=ALICE)
    tracing_page = _trace(client, csrf, ALICE)
    tracing = next(url for url in urls_in(tracing_page.text) if url.startswith("/tracing?q="))
    tracing_handle = query_of(tracing)["q"][0]
    download = next(url for url in urls_in(tracing_page.text) if url.startswith("/tracing/export"))
    export = "/export" + entries.removeprefix("/entries")

    other_csrf = log_in(other_client, "admin")  # sees everything, not by another's handle
    for url in (entries, export, f"/tracing?q={tracing_handle}"):
        page = other_client.get(url)
        assert page.status_code == 200, url
        assert 'id="search-expired"' in page.text, url
        assert "Hãy nhập lại và tìm lại" in page.text  # said in the user's language
        assert ALICE not in page.text and ALICE_NAME not in page.text, url
        assert "data-event=" not in page.text and "data-subject=" not in page.text, url
        assert "/export/download" not in page.text, url
    refused = other_client.get(download)
    assert refused.status_code == 410 and ALICE not in refused.text
    form = {"csrf_token": other_csrf, "q": query_of(entries)["q"][0]}
    unmasked = other_client.post("/entries/unmask", data=form)
    assert 'id="search-expired"' in unmasked.text and "data-event=" not in unmasked.text


def test_the_same_user_s_next_login_cannot_use_the_handle_either(
    client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    entries = search_entries(client, csrf, person=ALICE)
    assert 'id="search-expired"' not in client.get(entries).text
    client.post("/logout", data={"csrf_token": csrf})
    log_in(client, "manager")
    page = client.get(entries)
    assert 'id="search-expired"' in page.text and "data-event=" not in page.text


def test_a_restarted_server_does_not_know_the_handle(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "manager")
    entries = search_entries(client, csrf, person=ALICE)
    state = app.state.web
    object.__setattr__(state, "search_handles", SearchHandles(lifetime=timedelta(hours=12)))
    page = client.get(entries)
    assert page.status_code == 200
    assert 'id="search-expired"' in page.text and "data-event=" not in page.text
    english = client.post(
        "/account/language", data={"csrf_token": csrf, "lang": "en", "next": entries}
    )
    assert english.status_code == 303
    assert "Please search again." in client.get(entries).text


# --- who may search, CSRF, headers -------------------------------------------------------------


def test_a_viewer_can_neither_search_people_nor_trace(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    csrf = log_in(client, "viewer")
    assert (
        client.post("/entries/search", data={"csrf_token": csrf, "person": ALICE}).status_code
        == 403
    )
    assert (
        client.post("/export/search", data={"csrf_token": csrf, "person": ALICE}).status_code == 403
    )
    traced = client.post("/tracing/search", data={"csrf_token": csrf, "subject": ALICE})
    assert traced.status_code == 403
    assert "Truy vết tiếp xúc cần quyền quản lý hoặc người truy vết." in traced.text
    assert client.get("/tracing/export?q=anything&format=csv").status_code == 403
    assert client.get(f"/tracing?subject={ALICE}").status_code == 403
    # Filters without a person are still the viewer's to use.
    plain = client.post("/entries/search", data={"csrf_token": csrf, "site": "hq"})
    assert redirect_target(plain) == "/entries?site=hq"
    assert len(app.state.web.search_handles) == 0  # nothing kept for a viewer
    assert app.state.web.audit.rows(action="search") == []
    assert app.state.web.audit.rows(action="trace") == []


@pytest.mark.parametrize("path", ["/entries/search", "/export/search", "/tracing/search"])
def test_the_search_forms_need_the_csrf_token(
    app: FastAPI, client: TestClient, stocked: Store, path: str
) -> None:
    log_in(client, "manager")
    form = {"person": ALICE, "subject": ALICE}
    assert client.post(path, data=form).status_code == 403
    assert client.post(path, data={**form, "csrf_token": "wrong"}).status_code == 403
    assert len(app.state.web.search_handles) == 0


def test_pages_tell_the_browser_to_send_no_referrer(client: TestClient, stocked: Store) -> None:
    log_in(client, "manager")
    answer = client.get("/entries")
    assert answer.headers["referrer-policy"] == "no-referrer"


# --- the handle store itself -------------------------------------------------------------------


def test_a_handle_expires_with_the_session_s_lifetime_and_the_oldest_go_first() -> None:
    clock = MovableClock()
    handles = SearchHandles(lifetime=timedelta(hours=12), clock=clock, max_handles=3)
    first = handles.hide("session-a", ALICE)
    assert handles.hide("session-a", ALICE) == first  # the same term, the same handle
    assert handles.reveal("session-a", first) == ALICE
    assert handles.reveal("session-b", first) is None
    assert handles.reveal("session-a", "not-a-handle") is None
    assert handles.reveal("session-a", "x" * 1000) is None
    clock.advance(12 * 3600 + 1)
    assert handles.reveal("session-a", first) is None
    assert len(handles) == 0

    made = [handles.hide("session-a", f"term {n}") for n in range(4)]
    assert len(handles) == 3
    assert handles.reveal("session-a", made[0]) is None  # evicted: the oldest
    assert [handles.reveal("session-a", h) for h in made[1:]] == ["term 1", "term 2", "term 3"]
    with pytest.raises(ValueError):
        handles.hide("", ALICE)


def test_one_session_cannot_push_out_another_session_s_handles() -> None:
    handles = SearchHandles(
        lifetime=timedelta(hours=12), clock=MovableClock(), max_handles=100, max_per_session=3
    )
    kept = handles.hide("manager-session", ALICE)
    flood = [handles.hide("busy-session", f"x{n}") for n in range(50)]
    assert handles.reveal("manager-session", kept) == ALICE  # untouched by the flood...
    assert len(handles) == 4  # ...which kept only its own newest three
    assert [handles.reveal("busy-session", h) for h in flood[-3:]] == ["x47", "x48", "x49"]
    assert handles.reveal("busy-session", flood[0]) is None


def test_a_viewer_s_old_bookmarks_make_no_handle(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    log_in(client, "viewer")
    for url in (f"/entries?person={ALICE}", f"/export?person={ALICE}", f"/people/{ALICE}"):
        assert client.get(url).status_code == 403, url
    assert len(app.state.web.search_handles) == 0


def test_a_manager_s_old_tracing_bookmark_goes_on_by_a_handle(
    client: TestClient, stocked: Store
) -> None:
    log_in(client, "manager")
    for url in (f"/people/{ALICE}?window=30", f"/tracing?subject={ALICE}&window=30"):
        target = redirect_target(client.get(url), ALICE)
        assert target.startswith("/tracing?q=") and "window=30" in target, target
        page = client.get(target)
        assert page.status_code == 200 and ALICE_NAME in page.text


def test_the_login_page_is_not_given_an_id_to_come_back_to(client: TestClient) -> None:
    for url, back in (
        (f"/people/{ALICE}", "/tracing"),
        (f"/tracing?subject={ALICE}&window=30", "/tracing?window=30"),
        (f"/entries?person={ALICE}&site=hq", "/entries?site=hq"),
    ):
        answer = client.get(url)
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert ALICE not in unquote_plus(location), location
        assert query_of(location)["next"] == [back]


def test_the_handle_store_is_thread_safe() -> None:
    handles = SearchHandles(lifetime=timedelta(hours=1), max_handles=500)
    made: dict[str, str] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        start.wait()
        for n in range(200):
            term = f"{worker}-{n}"
            handle = handles.hide(f"session-{worker}", term)
            with lock:
                made[handle] = term
            handles.reveal(f"session-{worker}", handle)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 8 * 200  # no handle given twice
    assert len(handles) == 500
    alive = [h for h, term in made.items() if handles.reveal(f"session-{term.split('-')[0]}", h)]
    assert len(alive) == 500
