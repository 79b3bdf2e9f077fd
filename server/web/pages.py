"""The dashboard's pages, rendered on the server: fleet, entries, person and contact tracing,
occupancy, export, account.

Each page asks BACKEND's reports for its data (server/reports/*) with the logged-in user, so the
masking, the role checks and the audit rows live in one place for the pages and the API alike;
nothing here reads a table. Live regions refresh through server/web/live.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from server.accounts import Role
from server.reports import NotAllowed
from server.reports.entries import view_entries
from server.reports.fleet import fleet_status
from server.reports.occupancy import occupancy_today
from server.reports.tracing import TracingResult, trace_contacts
from server.web.auth import User, require_role, safe_next
from server.web.i18n import LANGUAGE_COOKIE, parse_local_datetime, supported_language
from server.web.live import router as live_router
from server.web.state import web_state
from server.web.views import STATUSES, EntryQuery, page_context, render, whole_number

router = APIRouter(include_in_schema=False)
router.include_router(live_router)

Viewer = Annotated[User, Depends(require_role(Role.VIEWER))]
Manager = Annotated[User, Depends(require_role(Role.MANAGER))]
PAGE_SIZE = 50
LANGUAGE_COOKIE_MAX_AGE_S = 365 * 86400


@router.get("/")
def fleet_page(request: Request, user: Viewer) -> Response:
    state = web_state(request)
    settings = state.settings
    context = page_context(request, user, "fleet")
    context["gates"] = fleet_status(
        state.store, context["now"], settings.offline_after_s, settings.tz
    )
    return render(request, "fleet.html", context)


# --- entries -------------------------------------------------------------------------------------


@router.get("/entries")
def entries_page(request: Request, user: Viewer, page: int = 1) -> Response:
    return _entries(request, user, EntryQuery.from_params(request.query_params), page, False)


@router.post("/entries/unmask")
async def entries_unmasked(request: Request, user: Manager) -> Response:
    """Unmasking writes an audit row, so it is a POST with the CSRF token, never a link."""
    form = await request.form()
    query = EntryQuery.from_params(form)
    return _entries(request, user, query, whole_number(form.get("page"), 1), True)


def _entries(request: Request, user: User, query: EntryQuery, page: int, unmask: bool) -> Response:
    state = web_state(request)
    context = page_context(request, user, "entries")
    result = view_entries(
        state.store,
        user,
        query.to_filter(state.settings.tz),
        max(1, page),
        unmask,
        page_size=PAGE_SIZE,
        audit=state.audit,
    )
    context.update(_filter_choices(request))
    context.update(
        query=query,
        result=result,
        unmasked=unmask,
        can_unmask=user.role >= Role.MANAGER,
        query_string=query.query_string(),
        page_link=lambda n: "/entries" + query.query_string(page=n),
        # A person search is audited on every look: a live region would write a row every poll.
        live=page == 1 and not unmask and not query.person,
    )
    return render(request, "entries.html", context)


def _filter_choices(request: Request) -> dict[str, Any]:
    devices = web_state(request).store.devices()
    return {
        "sites": sorted({device.site_id for device in devices if device.site_id}),
        "gate_ids": [device.device_id for device in devices],
        "statuses": STATUSES,
    }


# --- person and contact tracing ------------------------------------------------------------------


@router.get("/tracing")
def tracing_page(request: Request, user: Viewer) -> Response:
    params = request.query_params
    return _tracing(request, user, str(params.get("subject") or "").strip())


@router.get("/people/{subject_id}")
def person_page(request: Request, user: Viewer, subject_id: str) -> Response:
    return _tracing(request, user, subject_id.strip())


@dataclass(frozen=True)
class TracingQuery:
    """The tracing form as sent: the subject, ±window minutes, and an optional period."""

    subject: str
    window: int
    since: str  # <input type="datetime-local">, site time
    until: str

    @classmethod
    def from_request(cls, request: Request, subject: str, default_window: int) -> TracingQuery:
        params = request.query_params
        return cls(
            subject=subject[:200],
            window=whole_number(params.get("window"), default_window),
            since=str(params.get("since") or "")[:40],
            until=str(params.get("until") or "")[:40],
        )


def _tracing(request: Request, user: User, subject: str) -> Response:
    state = web_state(request)
    tz = state.settings.tz
    query = TracingQuery.from_request(request, subject, state.settings.tracing_window_min)
    context = page_context(request, user, "tracing")
    t = context["t"]
    context.update(query=query, result=None, error=None, export_links=[])
    if not query.subject:
        return render(request, "tracing.html", context)
    since = parse_local_datetime(query.since, tz)
    until = parse_local_datetime(query.until, tz)
    try:
        result = trace_contacts(
            state.store, user, query.subject, query.window, since, until, audit=state.audit
        )
    except NotAllowed:
        context["error"] = t("tracing.forbidden")
        return render(request, "tracing.html", context, status_code=403)
    except ValueError:
        context["error"] = t("tracing.bad_window")
        return render(request, "tracing.html", context, status_code=400)
    context["result"] = result
    context["export_links"] = [
        (_tracing_export_url(result, query.window, since, until, kind), t(label))
        for kind, label in (("csv", "tracing.export_csv"), ("json", "tracing.export_json"))
    ]
    return render(request, "tracing.html", context)


def _tracing_export_url(
    result: TracingResult, window: int, since: datetime | None, until: datetime | None, kind: str
) -> str:
    """BACKEND's tracing download for the same query (it is audited again when fetched)."""
    pairs = [("window_min", str(window))]
    pairs += [
        (name, value.isoformat()) for name, value in (("since", since), ("until", until)) if value
    ]
    path = f"/api/v1/people/{quote(result.subject_id, safe='')}/trace/export"
    return f"{path}?{urlencode([*pairs, ('format', kind)])}"


# --- occupancy, export, account ------------------------------------------------------------------


@router.get("/occupancy")
def occupancy_page(request: Request, user: Viewer) -> Response:
    state = web_state(request)
    context = page_context(request, user, "occupancy")
    context["sites"] = occupancy_today(state.store, state.settings.tz, clock=state.clock)
    return render(request, "occupancy.html", context)


@router.get("/export")
def export_page(request: Request, user: Viewer) -> Response:
    state = web_state(request)
    tz = state.settings.tz
    query = EntryQuery.from_params(request.query_params)
    context = page_context(request, user, "export")
    context.update(_filter_choices(request))
    # How many rows the download will hold. Counted as the entries page would: a count for one
    # person tells how often they came, so it needs the manager role and is audited.
    entry_filter = query.to_filter(tz)
    counted = view_entries(
        state.store, user, entry_filter, 1, False, page_size=1, audit=state.audit
    )
    api = "/api/v1/entries/export?"
    links = {"csv_url": api + query.api_query(tz, format="csv")}
    links["json_url"] = api + query.api_query(tz, format="json")
    if user.role >= Role.MANAGER:
        links["csv_unmasked_url"] = api + query.api_query(tz, format="csv", unmask="true")
        links["json_unmasked_url"] = api + query.api_query(tz, format="json", unmask="true")
    context.update(query=query, total=counted.total, **links)
    return render(request, "export.html", context)


@router.get("/account")
def account_page(request: Request, user: Viewer, saved: bool = False) -> Response:
    context = page_context(request, user, "account")
    context["saved"] = saved
    return render(request, "account.html", context)


@router.post("/account/language")
def choose_language(
    request: Request,
    user: Viewer,
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
