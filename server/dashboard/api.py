"""/api/v1: the dashboard's data as JSON, for scripts (a bearer token) and pages (a session).

Every route states its least role with `require_role`; the tests walk the app's routes and check
that each one answers 401 without credentials and 403 to a lower role.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, AwareDatetime

from protocol.verdicts import VerdictStatus
from server.accounts.users import Role
from server.dashboard.auth import User, require_role
from server.dashboard.downloads import entries_export, tracing_export
from server.dashboard.reports.access import account_sites, concerned_site
from server.dashboard.reports.alerts import (
    AlertList,
    NoSuchAlert,
    acknowledge_alert,
    alerts_for,
)
from server.dashboard.reports.audit_view import audit_rows
from server.dashboard.reports.entries import (
    EntryFilter,
    EntryPage,
    check_person_lookup,
    check_unmask,
    view_entries,
)
from server.dashboard.reports.fleet import GateStatus, fleet_status
from server.dashboard.reports.occupancy import SiteOccupancy, occupancy_today
from server.dashboard.reports.tracing import (
    MAX_REASON,
    MissingReason,
    TracingResult,
    trace_contacts,
)
from server.dashboard.state import web_state
from server.store.alerts import AlertRow
from server.store.audit import AuditRow

router = APIRouter(prefix="/api/v1", tags=["v1"])

Viewer = Annotated[User, Depends(require_role(Role.VIEWER))]
Manager = Annotated[User, Depends(require_role(Role.MANAGER))]
Anyone = Annotated[User, Depends(require_role(Role.VIEWER, tracer=True))]  # a tracer too
Tracing = Annotated[User, Depends(require_role(Role.MANAGER, tracer=True))]  # and a tracer
ExportFormat = Literal["csv", "json"]


def _in_utc_range(value: datetime) -> datetime:
    """A time the store can hold: year 1 at +14:00 has no UTC (the answer is 422, not 500)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None
    return value


ApiTime = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


def entry_filter(
    site: Annotated[str | None, Query(max_length=200, description="site_id")] = None,
    gate: Annotated[str | None, Query(max_length=64, description="device_id")] = None,
    since: Annotated[ApiTime | None, Query(description="ts >= since (RFC 3339)")] = None,
    until: Annotated[ApiTime | None, Query(description="ts < until (RFC 3339)")] = None,
    status: Annotated[VerdictStatus | None, Query(description="the verdict")] = None,
    person: Annotated[
        str | None, Query(max_length=200, description="ID number, or part of a name (audited)")
    ] = None,
) -> EntryFilter:
    return EntryFilter(site, gate, since, until, status, person or None)


Filter = Annotated[EntryFilter, Depends(entry_filter)]


@router.get("/me", summary="Who the credentials belong to")
def me(user: Anyone) -> dict[str, str | list[str] | None]:
    """`sites`: the sites the role holds on, or null for every site."""
    sites = account_sites(user)
    return {
        "name": user.name,
        "role": user.role.label,
        "language": user.language,
        "via": user.via,
        "sites": None if sites is None else sorted(sites),
    }


@router.get("/devices", summary="Every gate's status (the fleet page)")
def devices(request: Request, user: Viewer) -> list[GateStatus]:
    state = web_state(request)
    settings = state.settings
    return fleet_status(
        state.store,
        state.clock(),
        settings.offline_after_s,
        settings.tz,
        sites=account_sites(user),
    )


@router.get("/entries", summary="Entries, newest first; masked unless unmask=true (manager)")
def entries(
    request: Request,
    user: Viewer,
    entry_filter: Filter,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    unmask: bool = False,
) -> EntryPage:
    state = web_state(request)
    return view_entries(
        state.store, user, entry_filter, page, unmask, page_size=page_size, audit=state.audit
    )


@router.get(
    "/entries/export",
    summary="Entries as CSV (UTF-8 with BOM) or JSON, oldest first; masked unless unmask=true",
    response_class=StreamingResponse,
)
def export_entries(
    request: Request,
    user: Viewer,
    entry_filter: Filter,
    format: ExportFormat = "csv",
    unmask: bool = False,
) -> StreamingResponse:
    if unmask:
        check_unmask(user, "an unmasked export")
    if entry_filter.person:
        check_person_lookup(user)
    entry_filter = entry_filter.limited_to(user)
    state = web_state(request)
    state.audit.record(
        user.name,
        "export",
        entry_filter.person or "",
        {"filter": entry_filter.as_details(), "format": format, "unmasked": unmask},
        site_id=concerned_site(user, entry_filter.site_id),
    )
    return entries_export(
        state.store,
        entry_filter,
        format,
        unmasked=unmask,
        now=state.clock(),
        tz=state.settings.tz,
    )


@router.get(
    "/people/{subject_id}/trace",
    summary="Contact tracing for one person (audited, with the reason; a tracer must give one)",
)
def trace(
    request: Request,
    user: Tracing,
    subject_id: str,
    window_min: Annotated[int | None, Query(ge=1, le=1440)] = None,
    since: ApiTime | None = None,
    until: ApiTime | None = None,
    reason: Annotated[str, Query(max_length=MAX_REASON)] = "",
) -> TracingResult:
    try:
        return _trace(request, user, subject_id, window_min, since, until, reason)
    except MissingReason as exc:
        raise HTTPException(400, str(exc)) from None


@router.get(
    "/people/{subject_id}/trace/export",
    summary="Contact tracing as CSV or JSON (audited)",
    response_class=StreamingResponse,
)
def trace_export(
    request: Request,
    user: Manager,
    subject_id: str,
    window_min: Annotated[int | None, Query(ge=1, le=1440)] = None,
    since: ApiTime | None = None,
    until: ApiTime | None = None,
    format: ExportFormat = "csv",
) -> StreamingResponse:
    result = _trace(request, user, subject_id, window_min, since, until)
    state = web_state(request)
    details = {"kind": "tracing", "format": format, "window_min": result.window_min}
    site = concerned_site(user, shown=(visit.site_id for visit in result.visits))
    state.audit.record(user.name, "export", subject_id, details, site_id=site)
    return tracing_export(result, format, now=state.clock(), tz=state.settings.tz)


def _trace(
    request: Request,
    user: User,
    subject_id: str,
    window_min: int | None,
    since: datetime | None,
    until: datetime | None,
    reason: str = "",
) -> TracingResult:
    state = web_state(request)
    window = window_min or state.settings.tracing_window_min
    return trace_contacts(
        state.store, user, subject_id, window, since, until, audit=state.audit, reason=reason
    )


@router.get("/occupancy", summary="People inside each site now (last passage today in), masked")
def occupancy(request: Request, user: Viewer) -> list[SiteOccupancy]:
    state = web_state(request)
    return occupancy_today(
        state.store, state.settings.tz, clock=state.clock, sites=account_sites(user)
    )


@router.get(
    "/audit",
    summary="The audit log, newest first: an admin's every row, a manager's their sites' rows",
)
def audit_log(
    request: Request,
    user: Manager,
    action: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRow]:
    state = web_state(request)
    return audit_rows(state.audit, user, action=action, actor=actor, limit=limit)


@router.get("/alerts", summary="Alerts open, and cleared in the last 24 hours, of your sites")
def alerts(request: Request, user: Viewer) -> AlertList:
    state = web_state(request)
    return alerts_for(state.store, user, state.clock())


@router.post(
    "/alerts/{alert_id}/acknowledge", summary="Acknowledge an open alert of your sites (audited)"
)
def acknowledge(request: Request, user: Manager, alert_id: int) -> AlertRow:
    try:
        return acknowledged(request, user, alert_id)
    except NoSuchAlert:
        raise HTTPException(404, "no open alert with that id among your sites") from None


def acknowledged(request: Request, user: User, alert_id: int) -> AlertRow:
    """Acknowledge, and write the audit row (the first acknowledgement only) with the alert's
    site; NoSuchAlert for none of the account's sites. The page's POST and the API's share it."""
    state = web_state(request)
    alert, first = acknowledge_alert(state.store, user, alert_id, state.clock())
    if first:
        details = {"alert_id": alert.id, "key": alert.key, "kind": alert.kind}
        state.audit.record(user.name, "alert", alert.device_id, details, site_id=alert.site_id)
    return alert
