"""The JSON API and the downloads: filters, masking by role, CSV that Excel opens safely."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.accounts.users import Role
from server.store.database import Store
from server.store.entry_export import FIELDS
from tests.support.web import START, bearer, cccd_event, log_in, raw_event

FORMULA = '=HYPERLINK("http://x","y")'
NAME = "Nguyễn Thị Ánh Tuyết"


@pytest.fixture
def stocked(store: Store) -> Store:
    store.add_events(
        [
            cccd_event(1, subject="079190000001", name=NAME),
            cccd_event(2, subject="079190000002", name="Trần Văn Bình", device="gate-2"),
            raw_event(3, FORMULA, ts=START + timedelta(minutes=1)),
        ],
        received_at=START,
    )
    return store


def _csv_rows(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM: Excel then reads UTF-8
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_a_viewer_s_csv_is_masked(app: FastAPI, client: TestClient, stocked: Store) -> None:
    answer = client.get("/api/v1/entries/export?format=csv", headers=bearer(app, Role.VIEWER))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = _csv_rows(answer.content)
    assert list(rows[0]) == list(FIELDS)
    by_id = {r["event_id"]: r for r in rows}
    first = by_id["evt-gate-1-000001"]
    assert (first["subject_id"], first["subject_name"]) == ("********0001", "N*** T*** Á*** T***")
    assert by_id["raw-gate-1-000003"]["code_text"] == "****" + FORMULA[-4:]
    assert "079190000001" not in answer.text and NAME not in answer.text


def test_a_manager_s_unmasked_csv_round_trips_vietnamese_and_defuses_formulas(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    url = "/api/v1/entries/export?format=csv&unmask=true"
    rows = _csv_rows(client.get(url, headers=bearer(app, Role.MANAGER)).content)
    by_id = {r["event_id"]: r for r in rows}
    assert by_id["evt-gate-1-000001"]["subject_name"] == NAME
    assert by_id["evt-gate-1-000001"]["subject_id"] == "079190000001"
    assert by_id["raw-gate-1-000003"]["code_text"] == "'" + FORMULA


def test_a_viewer_cannot_export_unmasked(app: FastAPI, client: TestClient, stocked: Store) -> None:
    url = "/api/v1/entries/export?format=csv&unmask=true"
    assert client.get(url, headers=bearer(app, Role.VIEWER)).status_code == 403


def test_the_json_export_applies_the_filters(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    url = "/api/v1/entries/export?format=json&gate=gate-2&unmask=true"
    answer = client.get(url, headers=bearer(app, Role.ADMIN))
    assert answer.headers["content-type"] == "application/json"
    (record,) = json.loads(answer.content)
    assert record["subject_name"] == "Trần Văn Bình"
    assert record["ts"] == "2026-03-02T10:00:00+07:00"  # the site's zone (START is 03:00 UTC)


def test_exports_are_audited(app: FastAPI, client: TestClient, stocked: Store) -> None:
    client.get("/api/v1/entries/export?format=csv&site=hq", headers=bearer(app, Role.VIEWER))
    client.get("/api/v1/entries/export?unmask=true", headers=bearer(app, Role.MANAGER))
    rows = app.state.web.audit.rows(action="export")
    assert [(r.actor, r.details["unmasked"]) for r in rows] == [
        ("token:script-manager", True),
        ("token:script-viewer", False),
    ]
    assert rows[1].details["filter"] == {"site_id": "hq"}


def test_entries_api_pages_filters_and_masks(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    headers = bearer(app, Role.VIEWER)
    page = client.get("/api/v1/entries?page_size=2", headers=headers).json()
    assert (page["total"], len(page["items"]), page["page"]) == (3, 2, 1)
    assert all(item["masked"] for item in page["items"])
    since = (START + timedelta(seconds=30)).isoformat()
    later = client.get("/api/v1/entries", params={"since": since}, headers=headers).json()
    assert [i["event_id"] for i in later["items"]] == ["raw-gate-1-000003"]
    denied = client.get("/api/v1/entries?status=denied", headers=headers).json()
    assert denied["total"] == 0
    assert client.get("/api/v1/entries?status=maybe", headers=headers).status_code == 422
    naive = client.get("/api/v1/entries", params={"since": "2026-03-02T03:00"}, headers=headers)
    assert naive.status_code == 422  # a time without its zone is ambiguous


def test_unmasking_through_a_session_is_audited(client: TestClient, stocked: Store) -> None:
    log_in(client, "manager")
    page = client.get("/api/v1/entries?unmask=true&person=079190000001").json()
    assert page["items"][0]["subject_name"] == NAME
    rows = client.app.state.web.audit.rows(action="unmask")  # type: ignore[attr-defined]
    assert [(r.actor, r.subject) for r in rows] == [("manager", "079190000001")]


def test_tracing_api_and_its_export_are_audited(
    app: FastAPI, client: TestClient, stocked: Store
) -> None:
    headers = bearer(app, Role.MANAGER)
    result = client.get("/api/v1/people/079190000001/trace?window_min=5", headers=headers).json()
    raw_subject = hashlib.sha256(FORMULA.encode()).hexdigest()  # a raw code is traced by digest
    assert [(p["subject_id"], p["max_overlap_min"], p["same_gate"]) for p in result["people"]] == [
        ("079190000002", 10.0, False),  # the same minute, another gate of the site
        (raw_subject, 9.0, True),  # a minute later, the same gate
    ]
    exported = client.get("/api/v1/people/079190000001/trace/export", headers=headers)
    rows = _csv_rows(exported.content)
    assert {r["contact_subject_id"] for r in rows} >= {"079190000002"}
    assert rows[0]["visit_ts"] == "2026-03-02T10:00:00+07:00"  # in the site's zone
    audit = app.state.web.audit.rows(action="trace")
    assert [(r.actor, r.subject) for r in audit] == [("token:script-manager", "079190000001")] * 2
    assert audit[1].details["window_min"] == 5
    assert audit[0].details["window_min"] == 60  # the site's default


def test_the_audit_log_is_for_admins(app: FastAPI, client: TestClient, stocked: Store) -> None:
    client.get("/api/v1/entries?unmask=true", headers=bearer(app, Role.MANAGER))
    rows = client.get("/api/v1/audit", headers=bearer(app, Role.ADMIN)).json()
    assert rows[0]["action"] == "unmask"


def test_the_openapi_description_lists_the_api(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert "/api/v1/entries/export" in schema["paths"]
    assert "/login" not in schema["paths"]
    docs = client.get("/api/docs")
    assert "/api/v1/people/{subject_id}/trace" in docs.text
    assert "<script" not in docs.text


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for url in ("/login", "/api/v1/me", "/api/docs"):
        headers = client.get(url).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
