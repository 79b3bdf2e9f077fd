"""The locations page (server/dashboard/locations/; issue 18) on the real store, SQLite and
PostgreSQL, through the dashboard app: who may look, download and change; another site's
location not shown and 404 on its actions; every POST with the CSRF token and audited with its
site; a name holding markup escaped; the downloads' types; never on the fleet page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from device.decode.backends import make_decoder
from protocol.messages import Status
from protocol.verdicts import Direction
from server.accounts.users import USER_ROLES, Accounts, Role
from server.dashboard.app import create_web_app
from server.dashboard.settings import WebSettings
from server.locations.records import Location, Locations
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.pdf import page_mm, pdf_text
from tests.support.web import FAST_HASHER, PASSWORD, START, MovableClock, log_in

DOWNLOADS = ("qr.png", "poster.svg", "poster.pdf")

PUBLIC = "https://checkin.example.vn"
MARKUP = '<script>alert("x")</script>'


@pytest.fixture
def places(store: Store) -> dict[str, Location]:
    rows = Locations(store.engine)
    return {
        "hq": rows.add("Quầy lễ tân", site_id="hq", direction=Direction.IN, now=START),
        "annex": rows.add("Sạp Zyxannex", site_id="annex", direction=Direction.OUT, now=START),
    }


def _app(store: Store, clock: MovableClock, public_url: str | None = PUBLIC) -> TestClient:
    accounts = Accounts(store.engine, hasher=FAST_HASHER, clock=clock)
    for role in USER_ROLES:
        accounts.add_user(role.label, role, PASSWORD)
    accounts.add_user("hq-manager", Role.MANAGER, PASSWORD, sites=["hq"])
    accounts.add_user("hq-viewer", Role.VIEWER, PASSWORD, sites=["hq"])
    store.record_status("gate-1", Status(state="online", ts=START, site_id="hq"), START)
    app = create_web_app(store, WebSettings(public_url=public_url), clock=clock,
                         monotonic=clock.monotonic, hasher=FAST_HASHER)  # fmt: skip
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def client(store: Store, clock: MovableClock, places: dict[str, Location]) -> Iterator[TestClient]:
    with _app(store, clock) as client:
        yield client


def _rows(page: str) -> list[str]:
    return re.findall(r'data-location="([^"]+)"', page)


@pytest.mark.parametrize(
    ("name", "sees"),
    [("admin", {"hq", "annex"}), ("manager", {"hq", "annex"}), ("hq-manager", {"hq"}),
     ("hq-viewer", {"hq"}), ("viewer", {"hq", "annex"})],
)  # fmt: skip
def test_each_account_sees_its_sites_locations(
    client: TestClient, places: dict[str, Location], name: str, sees: set[str]
) -> None:
    log_in(client, name)
    page = client.get("/locations")
    assert page.status_code == 200
    assert set(_rows(page.text)) == {places[site].location_id for site in sees}
    for site in sees:
        assert f"{PUBLIC}/c/{places[site].token}" in page.text
    if "annex" not in sees:
        assert "Zyxannex" not in page.text and "annex" not in page.text
    can_manage = name in ("admin", "manager", "hq-manager")
    assert ('id="location-form"' in page.text) == can_manage
    assert ("/disable" in page.text) == can_manage
    assert 'href="/locations"' in page.text  # the menu


@pytest.mark.parametrize("name", ["tracer", "technician"])
def test_a_tracer_and_a_technician_get_no_locations(
    client: TestClient, places: dict[str, Location], name: str
) -> None:
    csrf = log_in(client, name)
    hq = places["hq"].location_id
    assert 'href="/locations"' not in client.get("/account").text
    for url in ("/locations", *(f"/locations/{hq}/{file}" for file in DOWNLOADS)):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/locations/{hq}/disable", data={"csrf_token": csrf}).status_code == 403


def test_a_manager_adds_disables_and_enables_audited_with_the_site(
    client: TestClient, store: Store
) -> None:
    csrf = log_in(client, "hq-manager")
    form = {"csrf_token": csrf, "name": "  Cổng   phụ ", "site": "hq", "direction": "out"}
    answer = client.post("/locations", data=form)
    assert answer.status_code == 303
    made_id = answer.headers["location"].split("added=")[1]
    made = Locations(store.engine).get(made_id)
    assert made is not None and (made.name, made.site_id, made.direction) == (
        "Cổng phụ", "hq", Direction.OUT
    )  # fmt: skip
    page = client.get(answer.headers["location"]).text
    assert 'id="location-added"' in page and made_id in page
    assert (
        client.post(f"/locations/{made_id}/disable", data={"csrf_token": csrf}).status_code == 303
    )
    assert Locations(store.engine).by_token(made.token) is None, "its posters stop working"
    assert 'data-enabled="false"' in client.get("/locations").text
    assert client.post(f"/locations/{made_id}/enable", data={"csrf_token": csrf}).status_code == 303
    assert Locations(store.engine).by_token(made.token) is not None
    rows = AuditLog(store.engine).rows(action="location")
    assert [(r.details["change"], r.subject, r.site_id, r.actor) for r in rows] == [
        (change, made_id, "hq", "hq-manager")
        for change in ("location enable", "location disable", "location add")
    ]


def test_a_manager_of_one_site_cannot_touch_another_s(
    client: TestClient, store: Store, places: dict[str, Location]
) -> None:
    csrf = log_in(client, "hq-manager")
    annex = places["annex"].location_id
    for action in ("disable", "enable"):
        assert (
            client.post(f"/locations/{annex}/{action}", data={"csrf_token": csrf}).status_code
            == 404
        )
    for file in DOWNLOADS:
        assert client.get(f"/locations/{annex}/{file}").status_code == 404, file
    form = {"csrf_token": csrf, "name": "Sạp mới", "site": "annex"}
    assert client.post("/locations", data=form).status_code == 403
    assert Locations(store.engine).get(annex).enabled  # type: ignore[union-attr]
    assert len(Locations(store.engine).listed()) == 2
    assert AuditLog(store.engine).rows(action="location") == []


def test_a_viewer_looks_and_prints_but_does_not_change(
    client: TestClient, store: Store, places: dict[str, Location]
) -> None:
    csrf = log_in(client, "hq-viewer")
    hq = places["hq"].location_id
    assert client.post(f"/locations/{hq}/disable", data={"csrf_token": csrf}).status_code == 403
    form = {"csrf_token": csrf, "name": "Sảnh", "site": "hq"}
    assert client.post("/locations", data=form).status_code == 403
    assert client.get(f"/locations/{hq}/qr.png").status_code == 200


def test_every_post_needs_the_csrf_token(
    client: TestClient, store: Store, places: dict[str, Location]
) -> None:
    log_in(client, "admin")
    hq = places["hq"].location_id
    for url, form in (
        ("/locations", {"name": "Sảnh", "site": "hq"}),
        (f"/locations/{hq}/disable", {}),
        (f"/locations/{hq}/enable", {}),
    ):
        assert client.post(url, data=form).status_code == 403, url
        assert client.post(url, data={**form, "csrf_token": "wrong"}).status_code == 403, url
    assert len(Locations(store.engine).listed()) == 2 and places["hq"].enabled
    assert Locations(store.engine).get(hq).enabled  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("form", "status"),
    [({"name": "", "site": "hq"}, 400), ({"name": "Sảnh", "site": ""}, 400),
     ({"name": "Sảnh", "site": "hq", "direction": "sideways"}, 400),
     ({"name": "Sảnh\nhai", "site": "hq"}, 400), ({"name": "x" * 121, "site": "hq"}, 400)],
)  # fmt: skip
def test_a_location_that_cannot_be_made_is_a_400(
    client: TestClient, store: Store, form: dict[str, str], status: int
) -> None:
    csrf = log_in(client, "admin")
    assert client.post("/locations", data={**form, "csrf_token": csrf}).status_code == status
    assert len(Locations(store.engine).listed()) == 2


def test_markup_in_a_name_is_text_on_the_page_and_the_poster(
    client: TestClient, store: Store
) -> None:
    csrf = log_in(client, "admin")
    answer = client.post("/locations", data={"csrf_token": csrf, "name": MARKUP, "site": "hq"})
    made_id = answer.headers["location"].split("added=")[1]
    page = client.get("/locations").text
    assert MARKUP not in page and "&lt;script&gt;" in page
    svg = client.get(f"/locations/{made_id}/poster.svg").text
    assert MARKUP not in svg and "<script" not in svg
    ET.fromstring(svg.encode("utf-8"))


def test_the_downloads_types_and_the_qr_reads_back(
    client: TestClient, places: dict[str, Location]
) -> None:
    log_in(client, "viewer")
    hq = places["hq"]
    qr = client.get(f"/locations/{hq.location_id}/qr.png")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png"
    assert qr.headers["content-disposition"] == f'attachment; filename="{hq.location_id}-qr.png"'
    grey = cv2.imdecode(np.frombuffer(qr.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert [code.text for code in make_decoder("auto").decode(grey)] == [f"{PUBLIC}/c/{hq.token}"]
    for size, width in (("a4", "210mm"), ("a5", "148mm")):
        poster = client.get(f"/locations/{hq.location_id}/poster.svg?size={size}")
        assert poster.status_code == 200
        assert poster.headers["content-type"].startswith("image/svg+xml")
        assert poster.headers["content-disposition"].startswith("attachment;")
        assert f'width="{width}"' in poster.text and "Quầy lễ tân" in poster.text
    assert client.get(f"/locations/{hq.location_id}/poster.svg?size=a3").status_code == 400
    for size, page in (("a4", (210, 297)), ("a5", (148, 210))):
        pdf = client.get(f"/locations/{hq.location_id}/poster.pdf?size={size}")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == (
            f'attachment; filename="{hq.location_id}-poster-{size}.pdf"'
        )
        assert page_mm(pdf.content) == [page] and "Quầy lễ tân" in pdf_text(pdf.content)
    assert client.get(f"/locations/{hq.location_id}/poster.pdf?size=a3").status_code == 400
    assert client.get("/locations/loc-aaaaaaaaaa/qr.png").status_code == 404
    assert client.get("/locations/..%2Fetc/qr.png").status_code == 404


def test_without_a_public_url_the_page_says_so_and_no_poster_is_made(
    store: Store, clock: MovableClock, places: dict[str, Location]
) -> None:
    with _app(store, clock, public_url=None) as client:
        log_in(client, "admin")
        page = client.get("/locations").text
        assert 'id="no-public-url"' in page and "/c/" not in page
        assert client.get(f"/locations/{places['hq'].location_id}/qr.png").status_code == 409


def test_locations_are_not_gates_on_the_fleet_page(
    client: TestClient, places: dict[str, Location]
) -> None:
    log_in(client, "admin")
    for url in ("/", "/live/fleet", "/api/v1/devices", "/alerts"):
        body = client.get(url).text
        assert places["hq"].location_id not in body and "Quầy lễ tân" not in body, url
