"""The dashboard's pages, rendered on the server: fleet, entries, person and contact tracing,
occupancy, export, the audit log, account.

Each page asks BACKEND's reports for its data (server/dashboard/reports/*) with the logged-in user,
so the masking, the role checks and the audit rows live in one place for the pages and the API
alike; nothing here reads a table. Live regions refresh through server/dashboard/live.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from firmware_config.errors import ConfigError
from protocol.topics import is_valid_device_id
from server.accounts.users import Role
from server.dashboard import api
from server.dashboard.auth import (
    FleetViewer,
    GateOperator,
    User,
    require_role,
    safe_next,
    user_language,
)
from server.dashboard.gate_settings.form import (
    ManagersOnly,
    as_technician,
    check_settings,
    problem_lines,
    read_form,
    setting_fields,
)
from server.dashboard.i18n.translate import (
    LANGUAGE_COOKIE,
    Translator,
    parse_local_datetime,
    supported_language,
)
from server.dashboard.live import router as live_router
from server.dashboard.reports.access import (
    NotAllowed,
    OtherSite,
    account_sites,
    may_operate_gates,
    may_trace,
)
from server.dashboard.reports.alerts import NoSuchAlert
from server.dashboard.reports.audit_view import audit_rows
from server.dashboard.reports.entries import check_person_lookup, view_entries
from server.dashboard.reports.fleet import (
    FORM_ACTIONS,
    REMOTE_ACTIONS,
    gate_remote,
    request_command,
)
from server.dashboard.reports.tracing import MAX_REASON, MissingReason, trace_contacts
from server.dashboard.search_handles import MAX_HANDLE_LENGTH
from server.dashboard.state import web_state
from server.dashboard.views import (
    HANDLE_PARAM,
    STATUSES,
    EntryQuery,
    alerts_context,
    entry_query,
    fleet_context,
    gate_context,
    hide_term,
    occupancy_context,
    page_context,
    render,
    reveal_term,
    whole_number,
)
from server.store.audit import AuditAction
from server.store.database import Store
from server.store.gate_commands import GateCommands

router = APIRouter(include_in_schema=False)
router.include_router(live_router)

Viewer = Annotated[User, Depends(require_role(Role.VIEWER))]
Manager = Annotated[User, Depends(require_role(Role.MANAGER))]
Anyone = Annotated[User, Depends(require_role(Role.VIEWER, tracer=True))]  # a tracer too
# One's own account: a technician's too (it may see no tracing page, not even its form).
Myself = Annotated[User, Depends(require_role(Role.VIEWER, tracer=True, technician=True))]
PAGE_SIZE = 50
LANGUAGE_COOKIE_MAX_AGE_S = 365 * 86400


@router.get("/")
def fleet_page(request: Request, user: FleetViewer) -> Response:
    context = fleet_context(request, user)
    # What became of a door release (release_door's redirect): words only, never raw input.
    door, gate = request.query_params.get("door"), request.query_params.get("gate", "")
    if door in ("sent", "failed") and is_valid_device_id(gate):
        context["door_notice"] = (door, gate)
    return render(request, "fleet.html", context)


@router.post("/gates/{device_id}/release")
def release_door(request: Request, user: Manager, device_id: str) -> Response:
    """A manager's release of one gate's door (a POST with the CSRF token, like every form):
    an audit row naming the user and the gate, then a `release_door` command to the gate on the
    collector's connection. 503 without a collector in this process (`gatescan web`)."""
    state = web_state(request)
    t = Translator(user_language(request, user))
    if state.door_releaser is None:
        return PlainTextResponse(t("fleet.door.unavailable"), status_code=503)
    known = {device.device_id: device.site_id for device in state.store.devices()}
    if not is_valid_device_id(device_id) or device_id not in known:
        return PlainTextResponse(t("fleet.door.unknown_gate"), status_code=404)
    sites = account_sites(user)
    if sites is not None and known[device_id] not in sites:  # a gate of another site
        raise OtherSite("this gate")
    command_id = secrets.token_urlsafe(12)
    details: dict[str, Any] = {"release": "dashboard", "command_id": command_id}
    site = known[device_id] or ""
    state.audit.record(user.name, "door", device_id, details, site_id=site)
    problem = state.door_releaser(device_id, user.name, command_id)
    if problem is not None:
        failed = {**details, "not_sent": problem}
        state.audit.record(user.name, "door", device_id, failed, site_id=site)
    outcome = "sent" if problem is None else "failed"
    return RedirectResponse("/?" + urlencode({"door": outcome, "gate": device_id}), 303)


# --- one gate: remote commands and its logs (issue 17) -------------------------------------------


@router.get("/gates/{device_id}")
def gate_page(request: Request, user: FleetViewer, device_id: str) -> Response:
    """A gate's page: where it stands and its machine's readings (a technician's too), buttons
    for its remote commands (GateOperator), the settings pushed to it, their latest answers and
    the gate's recent warnings and errors; 404 for a gate unknown or of another site."""
    return _gate_page(request, user, device_id)


def _gate_page(
    request: Request,
    user: User,
    device_id: str,
    *,
    entered: Mapping[str, Any] | None = None,
    problems: list[str] | None = None,
) -> Response:
    """The gate's page; with `entered` and `problems`, its settings form as sent and why it was
    refused (a 400)."""
    context = gate_context(request, user, device_id) if is_valid_device_id(device_id) else None
    store = web_state(request).store
    # Of another site: not found, as a gate never heard from (gate_context says None first).
    gate = gate_remote(store, device_id, account_sites(user), context["now"]) if context else None
    if context is None or gate is None:
        t = Translator(user_language(request, user))
        return PlainTextResponse(t("fleet.door.unknown_gate"), status_code=404)
    context["gate"] = gate
    context["remote_actions"] = REMOTE_ACTIONS
    context["can_command"] = may_operate_gates(user)
    context["can_preview"] = may_operate_gates(user)  # "Preview / Aim" (issue 17)
    # The relay's self-test moves the door: a manager's, as the door's release is.
    context["can_test_relay"] = user.role >= Role.MANAGER
    sent = request.query_params.get("sent", "")
    context["sent_action"] = sent if sent in REMOTE_ACTIONS + FORM_ACTIONS else None
    shown = entered if entered is not None else pushed_now(store, device_id)
    context["setting_fields"] = setting_fields(shown, manager=user.role >= Role.MANAGER)
    context["setting_problems"] = problems or []
    return render(request, "gate.html", context, status_code=400 if problems else 200)


def pushed_now(store: Store, device_id: str) -> dict[str, Any]:
    """The settings the gate last said it applied (its newest push answered `done`)."""
    row = GateCommands(store.engine).newest_done(device_id, "push_config")
    settings = row.args.get("settings") if row is not None else None
    return dict(settings) if isinstance(settings, dict) else {}


@router.post("/gates/{device_id}/settings")
async def gate_settings(request: Request, user: GateOperator, device_id: str) -> Response:
    """The settings form (a POST with the CSRF token): read, checked with the gate's own config
    model, then sent as push_config, audited with the gate's site; the gate checks it over its
    file again and answers on the page. A technician sends the managers' keys unchanged."""
    if not is_valid_device_id(device_id):
        return PlainTextResponse("not found", status_code=404)
    form = await request.form()
    submitted = {key: [str(value) for value in form.getlist(key)] for key in form}
    return await run_in_threadpool(_push_settings, request, user, device_id, submitted)


def _push_settings(
    request: Request, user: User, device_id: str, submitted: dict[str, list[str]]
) -> Response:
    state = web_state(request)
    t = Translator(user_language(request, user))
    current = pushed_now(state.store, device_id)
    try:
        settings = read_form(submitted)
        if user.role < Role.MANAGER:
            settings = as_technician(settings, current)
        check_settings(settings, device_id)
    except ManagersOnly as refused:
        return PlainTextResponse(t("gate.settings.managers_only", keys=str(refused)), 403)
    except ConfigError as error:
        entered = {
            key: values[0] if len(values) == 1 else values for key, values in submitted.items()
        }
        return _gate_page(request, user, device_id, entered=entered, problems=problem_lines(error))
    made = request_command(
        state.store,
        device_id,
        "push_config",
        {"settings": settings},
        user.name,
        state.clock(),
        account_sites(user),
    )
    if made is None:
        return PlainTextResponse(t("fleet.door.unknown_gate"), status_code=404)
    return RedirectResponse(f"/gates/{device_id}?" + urlencode({"sent": "push_config"}), 303)


@router.post("/gates/{device_id}/command")
def gate_command(
    request: Request,
    user: GateOperator,
    device_id: str,
    action: Annotated[str, Form(max_length=32)],
    include_relay: Annotated[bool, Form()] = False,
) -> Response:
    """One remote command (a POST with the CSRF token), audited with the gate's site, written
    for the collector to send (server/collector/command_mailbox.py); the page shows its answer."""
    state = web_state(request)
    t = Translator(user_language(request, user))
    if include_relay and user.role < Role.MANAGER:  # the door moves: a manager's, as release is
        return PlainTextResponse(t("gate.relay_test_managers"), status_code=403)
    args: dict[str, Any] = {"include_relay": True} if include_relay else {}
    if action != "selftest_gpio":
        args = {}
    sites = account_sites(user)
    made = None
    if is_valid_device_id(device_id) and action in REMOTE_ACTIONS:  # the forms have their own
        made = request_command(
            state.store, device_id, action, args, user.name, state.clock(), sites
        )
    if made is None:
        return PlainTextResponse(t("fleet.door.unknown_gate"), status_code=404)
    return RedirectResponse(f"/gates/{device_id}?" + urlencode({"sent": action}), 303)


# --- alerts (issue 16) ---------------------------------------------------------------------------


@router.get("/alerts")
def alerts_page(request: Request, user: FleetViewer) -> Response:
    return render(request, "alerts.html", alerts_context(request, user))


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge_alert_page(request: Request, user: Manager, alert_id: int) -> Response:
    """A manager's acknowledgement (a POST with the CSRF token), audited with the alert's site."""
    try:
        api.acknowledged(request, user, alert_id)
    except NoSuchAlert:
        t = Translator(user_language(request, user))
        return PlainTextResponse(t("alerts.not_found"), status_code=404)
    return RedirectResponse("/alerts", 303)


# --- entries -------------------------------------------------------------------------------------
#
# No page URL holds a search term (an ID number, a name): the filter form is POSTed and answered
# with a redirect to the page by a handle, `?q=` (search_handles.py). `person=` in the query is
# still read, for bookmarks made before, but never put in a link.


@router.get("/entries")
def entries_page(request: Request, user: Viewer, page: int = 1) -> Response:
    query = entry_query(request, user, request.query_params)
    if "person" in request.query_params:  # an old bookmark: to the same page by a handle
        return RedirectResponse("/entries" + query.query_string(page=page), status_code=303)
    return _entries(request, user, query, page, False)


@router.post("/entries/search")
async def entries_search(request: Request, user: Viewer) -> Response:
    return await _search_redirect(request, user, "/entries")


@router.post("/entries/unmask")
async def entries_unmasked(request: Request, user: Manager) -> Response:
    """Unmasking writes an audit row, so it is a POST with the CSRF token, never a link."""
    form = await request.form()
    query = await run_in_threadpool(entry_query, request, user, form)
    return await run_in_threadpool(
        _entries, request, user, query, whole_number(form.get("page"), 1), True
    )


async def _search_redirect(request: Request, user: User, target: str) -> Response:
    """The filter form's POST: the person searched for goes behind a handle, the rest (site,
    gate, times, verdict: nothing personal) stays readable in the URL."""
    form = await request.form()
    query = EntryQuery.from_params(form)
    if query.person:
        check_person_lookup(user)  # a viewer may not search for people (403)
        handle = await run_in_threadpool(hide_term, request, query.person)
        query = replace(query, handle=handle)
    return RedirectResponse(target + query.query_string(), status_code=303)


def _entries(request: Request, user: User, query: EntryQuery, page: int, unmask: bool) -> Response:
    state = web_state(request)
    context = page_context(request, user, "entries")
    context.update(_filter_choices(request, user))
    context.update(
        query=query,
        result=None,
        unmasked=unmask,
        can_unmask=user.role >= Role.MANAGER,
        query_string=query.query_string(),
        here="/entries" + query.query_string(page=page if page > 1 else None),
        page_link=lambda n: "/entries" + query.query_string(page=n),
        live=False,
    )
    if query.expired:
        return render(request, "entries.html", context)
    context["result"] = view_entries(
        state.store,
        user,
        query.to_filter(state.settings.tz),
        max(1, page),
        unmask,
        page_size=PAGE_SIZE,
        audit=state.audit,
    )
    # A person search is audited on every look: a live region would write a row every poll.
    context["live"] = page == 1 and not unmask and not query.person
    return render(request, "entries.html", context)


def _filter_choices(request: Request, user: User) -> dict[str, Any]:
    """The filter form's choices: the sites and gates of the user's sites."""
    devices = web_state(request).store.devices(account_sites(user))
    return {
        "sites": sorted({device.site_id for device in devices if device.site_id}),
        "gate_ids": [device.device_id for device in devices],
        "statuses": STATUSES,
    }


# --- person and contact tracing ------------------------------------------------------------------


@router.get("/tracing")
def tracing_page(request: Request, user: Anyone) -> Response:
    params = request.query_params
    handle = str(params.get(HANDLE_PARAM) or "").strip()
    if handle:
        subject = reveal_term(request, handle)
        reason_handle = str(params.get(REASON_PARAM) or "").strip()
        reason = reveal_term(request, reason_handle) if reason_handle else ""
        if subject is None or reason is None:
            return _tracing(request, user, "", params, expired=True)
        return _tracing(request, user, subject, {**params, "reason": reason}, handle=handle)
    # `subject=`: a bookmark made before the handles; still read, never made.
    return _tracing_by_handle(request, user, str(params.get("subject") or "").strip(), params)


@router.post("/tracing/search")
async def tracing_search(request: Request, user: Anyone) -> Response:
    """The tracing form's POST: answered by a redirect to the result by a handle."""
    form = await request.form()
    subject = str(form.get("subject") or "").strip()
    if not subject:
        return RedirectResponse("/tracing", status_code=303)
    return await run_in_threadpool(_tracing_by_handle, request, user, subject, form)


@router.get("/people/{subject_id}")
def person_page(request: Request, user: Anyone, subject_id: str) -> Response:
    """For old bookmarks: the pages link to /tracing?q=... instead."""
    return _tracing_by_handle(request, user, subject_id.strip(), request.query_params)


def _tracing_by_handle(
    request: Request, user: User, subject: str, params: Mapping[str, Any]
) -> Response:
    """A subject given outright (the search form, an old bookmark): a manager or tracer is sent
    on to the result by a handle (the reason by another), so the address bar (and the history
    from now on) never holds them; others get the page's 403, and nothing is kept."""
    if not subject or not may_trace(user):
        return _tracing(request, user, subject, params)
    window = web_state(request).settings.tracing_window_min
    query = TracingQuery.from_params(params, subject, window)
    url = query.url(hide_term(request, query.subject), _reason_handle(request, query))
    return RedirectResponse(url, status_code=303)


def _reason_handle(request: Request, query: TracingQuery) -> str:
    """The trace's reason behind a handle of its own: it may name a case or a person."""
    return hide_term(request, query.reason) if query.reason else ""


@dataclass(frozen=True)
class TracingQuery:
    """The tracing form as sent: the subject, ±window minutes, an optional period, and the
    reason (audited; a tracer must give one)."""

    subject: str
    window: int
    since: str  # <input type="datetime-local">, site time
    until: str
    reason: str = ""

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], subject: str, default_window: int
    ) -> TracingQuery:
        return cls(
            subject=subject[:200],
            window=whole_number(params.get("window"), default_window),
            since=str(params.get("since") or "")[:40],
            until=str(params.get("until") or "")[:40],
            reason=" ".join(str(params.get("reason") or "").split())[:MAX_REASON],
        )

    def url(self, handle: str, reason_handle: str = "") -> str:
        """This query's result page, the subject and the reason by their handles."""
        pairs = [(HANDLE_PARAM, handle), ("window", str(self.window))]
        pairs += [(name, value) for name, value in (("since", self.since), ("until", self.until))]
        pairs.append((REASON_PARAM, reason_handle))
        return "/tracing?" + urlencode([(name, value) for name, value in pairs if value])


REASON_PARAM = "r"  # the reason's handle in a tracing page's URL


def _tracing(
    request: Request,
    user: User,
    subject: str,
    params: Mapping[str, Any],
    *,
    handle: str = "",
    expired: bool = False,
) -> Response:
    state = web_state(request)
    tz = state.settings.tz
    query = TracingQuery.from_params(params, subject, state.settings.tracing_window_min)
    context = page_context(request, user, "tracing")
    t = context["t"]
    context.update(query=query, result=None, error=None, expired=expired, export_links=[])
    context.update(reason_needed=user.role == Role.TRACER, reason_handle="")
    if not query.subject:
        return render(request, "tracing.html", context)
    if not may_trace(user):  # no handle for a viewer: the page says why, and nothing more
        context["here"] = "/tracing"  # not the POST-only search address
        context["error"] = t("tracing.forbidden")
        return render(request, "tracing.html", context, status_code=403)
    handle = handle or hide_term(request, query.subject)
    context["reason_handle"] = reason_handle = _reason_handle(request, query)
    context["here"] = query.url(handle, reason_handle)
    since = parse_local_datetime(query.since, tz)
    until = parse_local_datetime(query.until, tz)
    try:
        result = trace_contacts(
            state.store,
            user,
            query.subject,
            query.window,
            since,
            until,
            audit=state.audit,
            reason=query.reason,
        )
    except NotAllowed:
        context["error"] = t("tracing.forbidden")
        return render(request, "tracing.html", context, status_code=403)
    except MissingReason:
        context["error"] = t("tracing.reason_needed")
        return render(request, "tracing.html", context, status_code=400)
    except ValueError:
        context["error"] = t("tracing.bad_window")
        return render(request, "tracing.html", context, status_code=400)
    context["result"] = result
    if user.role < Role.MANAGER:  # a tracer traces; downloads are a manager's
        return render(request, "tracing.html", context)
    context["export_links"] = [
        (_tracing_export_url(handle, query, kind), t(label))
        for kind, label in (("csv", "tracing.export_csv"), ("json", "tracing.export_json"))
    ]
    return render(request, "tracing.html", context)


def _tracing_export_url(handle: str, query: TracingQuery, kind: str) -> str:
    """The page's tracing download for the same query (audited again when fetched)."""
    pairs = [(HANDLE_PARAM, handle), ("format", kind), ("window_min", str(query.window))]
    pairs += [(name, value) for name, value in (("since", query.since), ("until", query.until))]
    return "/tracing/export?" + urlencode([(name, value) for name, value in pairs if value])


@router.get("/tracing/export")
def tracing_export_page(
    request: Request,
    user: Manager,
    q: Annotated[str, Query(max_length=MAX_HANDLE_LENGTH)],
    window_min: Annotated[int | None, Query(ge=1, le=1440)] = None,
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    format: api.ExportFormat = "csv",
) -> Response:
    """The tracing download (CSV or JSON) by handle: /api/v1's own export, audited the same."""
    subject = reveal_term(request, q)
    if subject is None:
        return _expired_download(request, user)
    tz = web_state(request).settings.tz
    start, end = parse_local_datetime(since, tz), parse_local_datetime(until, tz)
    return api.trace_export(request, user, subject, window_min, start, end, format)


def _expired_download(request: Request, user: User) -> Response:
    t = Translator(user_language(request, user))
    return PlainTextResponse(t("search.expired"), status_code=410)


# --- occupancy, export, account ------------------------------------------------------------------


@router.get("/occupancy")
def occupancy_page(request: Request, user: Viewer) -> Response:
    return render(request, "occupancy.html", occupancy_context(request, user))


@router.get("/export")
def export_page(request: Request, user: Viewer) -> Response:
    state = web_state(request)
    query = entry_query(request, user, request.query_params)
    if "person" in request.query_params:  # an old bookmark: to the same page by a handle
        return RedirectResponse("/export" + query.query_string(), status_code=303)
    context = page_context(request, user, "export")
    context.update(_filter_choices(request, user))
    context.update(query=query, total=None, here="/export" + query.query_string())
    if query.expired:
        return render(request, "export.html", context)
    # How many rows the download will hold. Counted as the entries page would: a count for one
    # person tells how often they came, so it needs the manager role and is audited.
    counted = view_entries(
        state.store,
        user,
        query.to_filter(state.settings.tz),
        1,
        False,
        page_size=1,
        audit=state.audit,
    )
    download = "/export/download"
    links = {
        "csv_url": download + query.query_string(format="csv"),
        "json_url": download + query.query_string(format="json"),
    }
    if user.role >= Role.MANAGER:
        links["csv_unmasked_url"] = download + query.query_string(format="csv", unmask="true")
        links["json_unmasked_url"] = download + query.query_string(format="json", unmask="true")
    context.update(total=counted.total, **links)
    return render(request, "export.html", context)


@router.post("/export/search")
async def export_search(request: Request, user: Viewer) -> Response:
    return await _search_redirect(request, user, "/export")


@router.get("/export/download")
def export_download(
    request: Request,
    user: Viewer,
    format: api.ExportFormat = "csv",
    unmask: bool = False,
) -> Response:
    """The export page's download, the person by handle: /api/v1's own export, audited the
    same (the filter's times are the form's, in site time)."""
    query = entry_query(request, user, request.query_params)
    if query.expired:
        return _expired_download(request, user)
    entry_filter = query.to_filter(web_state(request).settings.tz)
    return api.export_entries(request, user, entry_filter, format, unmask)


@router.get("/audit")
def audit_page(
    request: Request,
    user: Manager,
    action: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """The audit log, newest first: an admin's every row, a manager's their sites' rows
    (reports/audit_view.py). Reading it is not itself audited."""
    state = web_state(request)
    context = page_context(request, user, "audit")
    rows = audit_rows(state.audit, user, action=action or None, limit=AUDIT_PAGE_ROWS)
    context.update(rows=rows, action=action, actions=AUDIT_ACTIONS, details_text=_details_text)
    return render(request, "audit.html", context)


def _details_text(details: dict[str, Any]) -> str:
    """A row's details as JSON that keeps Vietnamese readable (escaped as text by the page)."""
    return json.dumps(details, ensure_ascii=False, sort_keys=True)


AUDIT_PAGE_ROWS = 200
AUDIT_ACTIONS = get_args(AuditAction)


@router.get("/account")
def account_page(request: Request, user: Myself, saved: bool = False) -> Response:
    context = page_context(request, user, "account")
    context["saved"] = saved
    return render(request, "account.html", context)


@router.post("/account/language")
def choose_language(
    request: Request,
    user: Myself,
    lang: Annotated[str, Form(max_length=8)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    language = supported_language(lang)
    if language is not None and user.via == "session":
        web_state(request).accounts.set_language(user.name, language)  # type: ignore[arg-type]
    return _with_language_cookie(request, safe_next(next), language)


@router.post("/language")
def choose_language_before_login(
    request: Request,
    lang: Annotated[str, Form(max_length=8)],
    next: Annotated[str, Form(max_length=2000)] = "/login",
) -> Response:
    """The login page's language buttons: only a cookie, nobody's account changes. A POST with
    the login form's CSRF token like every other change, so another site cannot flip it."""
    return _with_language_cookie(request, safe_next(next), supported_language(lang))


def _with_language_cookie(request: Request, target: str, language: str | None) -> Response:
    response = RedirectResponse(target, status_code=303)
    if language is not None:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=LANGUAGE_COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=web_state(request).settings.secure_cookies,
            path="/",
        )
    return response
