"""What the dashboard's pages and their live fragments share: the template context (words,
dates, the user, the CSRF token), the entry filter as the forms send it, and the words for a
gate's flags. pages.py and live.py both build on this, so a live fragment renders exactly as the
page it refreshes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from protocol.verdicts import VerdictStatus
from server.accounts.users import Role
from server.dashboard.auth import User, user_language, without_personal_params
from server.dashboard.csrf import csrf_token
from server.dashboard.i18n.translate import (
    DateFormatter,
    Translator,
    i18n_context,
    parse_local_datetime,
)
from server.dashboard.reports.access import account_sites, may_operate_gates
from server.dashboard.reports.alerts import alerts_for, open_alert_count
from server.dashboard.reports.entries import EntryFilter, check_person_lookup
from server.dashboard.reports.fleet import GateStatus, fleet_status, registered_gates
from server.dashboard.reports.gate_system import size_text
from server.dashboard.reports.occupancy import occupancy_today
from server.dashboard.state import session_key, web_state

LIVE_INTERVAL_S = 3  # the issue allows polling up to 5 s; 3 s shows a change within one glance
STATUSES = tuple(status.value for status in VerdictStatus)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,7}")


def whole_number(text: object, default: int) -> int:
    """A form's number field: ASCII digits only ("²" and "١" pass str.isdigit, not int())."""
    value = str(text or "")
    return int(value) if _WHOLE_NUMBER.fullmatch(value) else default


@dataclass(frozen=True)
class EntryQuery:
    """The entry filter as a form sends it: every field text, "" for "any".

    `person` (an ID number or a name) never goes into a URL or a form of ours: `handle` stands
    for it there (`q`, see search_handles.py). `expired` says a `q` was given that no longer
    resolves for this session: the page then shows nothing but a request to search again.
    """

    site: str = ""
    gate: str = ""
    since: str = ""  # <input type="datetime-local">: site time, no zone
    until: str = ""
    verdict: str = ""
    person: str = ""
    handle: str = ""
    expired: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EntryQuery:
        """The filter as sent, `person` included (the search form; an old bookmark)."""
        values = {name: str(params.get(name) or "").strip()[:200] for name in FILTER_FIELDS}
        if values["verdict"] not in STATUSES:
            values["verdict"] = ""
        return cls(
            site=values["site"],
            gate=values["gate"],
            since=values["since"],
            until=values["until"],
            verdict=values["verdict"],
            person=values["person"],
        )

    def items(self) -> list[tuple[str, str]]:
        """The filter as it may travel in a URL or a hidden field: the person as its handle."""
        pairs = [(name, getattr(self, name)) for name in FILTER_FIELDS if name != "person"]
        return [*pairs, (HANDLE_PARAM, self.handle)]

    def to_filter(self, tz: ZoneInfo) -> EntryFilter:
        return EntryFilter(
            site_id=self.site or None,
            device_id=self.gate or None,
            since=parse_local_datetime(self.since, tz),
            until=parse_local_datetime(self.until, tz),
            status=VerdictStatus(self.verdict) if self.verdict else None,
            person=self.person or None,
        )

    def query_string(self, **extra: object) -> str:
        """ "?site=hq&..." for links that keep this filter ("" when there is none)."""
        pairs = [(name, value) for name, value in self.items() if value]
        pairs += [(name, str(value)) for name, value in extra.items() if value not in (None, "")]
        return "?" + urlencode(pairs) if pairs else ""


FILTER_FIELDS = ("site", "gate", "since", "until", "verdict", "person")
HANDLE_PARAM = "q"


def hide_term(request: Request, term: str) -> str:
    """A handle for a search term, for the session making this request (search_handles.py)."""
    return web_state(request).search_handles.hide(session_key(request), term)


def reveal_term(request: Request, handle: str) -> str | None:
    """The search term behind a handle, if this request's session made it and it is alive."""
    return web_state(request).search_handles.reveal(session_key(request), handle)


def entry_query(request: Request, user: User, params: Mapping[str, Any]) -> EntryQuery:
    """The entry filter of a page request or a form: `q` resolved to the person, or a person
    given outright (an old bookmark's `person=`) given a handle for the links built from it,
    once the user may search for people (NotAllowed, a 403, before any handle is made)."""
    query = EntryQuery.from_params(params)
    handle = str(params.get(HANDLE_PARAM) or "").strip()
    if handle:
        term = reveal_term(request, handle)
        if term is None:
            return replace(query, person="", handle="", expired=True)
        return replace(query, person=term, handle=handle)
    if query.person:
        check_person_lookup(user)
        return replace(query, handle=hide_term(request, query.person))
    return query


def person_link(request: Request) -> Callable[..., str]:
    """A template helper: the tracing page for one person, by a handle minted for this session
    (never /people/{id}: a URL keeps what it holds in the browser's history)."""

    def link(subject_id: str, **params: object) -> str:
        pairs = [(HANDLE_PARAM, hide_term(request, subject_id))]
        pairs += [(name, str(value)) for name, value in params.items() if value not in (None, "")]
        return "/tracing?" + urlencode(pairs)

    return link


class Wording:
    """Words that need a little logic: a gate's flags and faults, numbers, short IDs."""

    def __init__(self, t: Translator, fmt: DateFormatter) -> None:
        self.t = t
        self.fmt = fmt

    def flag_text(self, why: str, gate: GateStatus) -> str:
        if why == "offline":
            if gate.offline_for_s is None:
                return self.t("fleet.flag.offline_never")
            return self.t("fleet.flag.offline", duration=self.fmt.duration(gate.offline_for_s))
        if why.startswith("fault:"):
            return self.t("fleet.flag.fault", faults=self.fault_text(why.removeprefix("fault:")))
        if why == "revoked":
            return self.t("fleet.flag.revoked")
        return why

    def fault_text(self, fault: str) -> str:
        key = f"fault.{fault}"
        return self.t(key) if self.t.has(key) else fault

    def throttle_text(self, bit: str) -> str:
        """A firmware throttling bit's words; one this server does not know, as the gate sent it
        (escaped by the page)."""
        key = f"throttle.{bit}"
        return self.t(key) if self.t.has(key) else bit

    @staticmethod
    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    def read_rate(self, gate: GateStatus) -> str:
        """The gate's read rate as a whole percentage; "—" without a frame to count."""
        if gate.read_ratio is None:
            return "—"
        return self.t("fleet.read_rate_value", percent=f"{gate.read_ratio * 100:.0f}")

    def read_rate_detail(self, gate: GateStatus) -> str:
        if gate.read_ratio is None:
            return self.t("fleet.read_rate_none")
        return self.t(
            "fleet.read_rate_of", read=gate.frames_read or 0, likely=gate.frames_with_code or 0
        )

    def offset(self, minutes: float) -> str:
        """A contact's time against the visit's: "3 phút sau", "cùng lúc"."""
        seconds = abs(minutes) * 60
        if seconds < 1:
            return self.t("tracing.same_moment")
        key = "tracing.offset_after" if minutes > 0 else "tracing.offset_before"
        return self.t(key, duration=self.fmt.duration(seconds))

    @staticmethod
    def short_subject(subject_id: str) -> str:
        """A raw code is traced by its 64-hex digest: too long for a table cell."""
        return subject_id if len(subject_id) <= 20 else subject_id[:12] + "…"

    def helpers(self) -> dict[str, Callable[..., str]]:
        return {
            "flag_text": self.flag_text,
            "fault_text": self.fault_text,
            "throttle_text": self.throttle_text,
            "size_text": size_text,
            "number": self.number,
            "read_rate": self.read_rate,
            "read_rate_detail": self.read_rate_detail,
            "short_subject": self.short_subject,
            "offset": self.offset,
        }


def page_context(request: Request, user: User, active: str) -> dict[str, Any]:
    """Everything base.html and the page parts need besides the page's own data."""
    state = web_state(request)
    words = i18n_context(user_language(request, user), state.settings.tz)
    return {
        **words,
        **Wording(words["t"], words["fmt"]).helpers(),
        "user": user,
        "role_name": user.role.label,
        "user_sites": _sites_shown(user),  # None: every site
        "can_look_up_people": user.role >= Role.MANAGER,  # the person filter (reports.entries)
        "shows_page": _page_shown(user),  # the menu's entries
        "home": "/tracing" if user.role == Role.TRACER else "/",
        "csrf_token": csrf_token(request),
        # Where the language switch comes back to. Pages that may hold a search term in their
        # own URL (an old bookmark's ?person=, /people/{id}) set it to the same view by its handle.
        "here": without_personal_params(request),
        "active": active,
        "now": state.clock(),
        "live_interval_s": LIVE_INTERVAL_S,
        "person_link": person_link(request),
    }


def _page_shown(user: User) -> Callable[[str], bool]:
    """Whether the menu shows a page (by its key) to `user`: a tracer sees tracing alone, a
    technician the fleet and its alerts, the audit log is a manager's and an admin's."""

    def shown(key: str) -> bool:
        if user.role == Role.TRACER:
            return key == "tracing"
        if key == "updates":  # server/dashboard/rollout/: the gate actions' roles
            return may_operate_gates(user)
        if user.role == Role.TECHNICIAN:
            return key in ("fleet", "alerts")
        return key != "audit" or user.role >= Role.MANAGER

    return shown


def _sites_shown(user: User) -> list[str] | None:
    sites = account_sites(user)
    return None if sites is None else sorted(sites)


def fleet_context(request: Request, user: User) -> dict[str, Any]:
    """The fleet page's context: for the page and its live region alike."""
    state = web_state(request)
    context = page_context(request, user, "fleet")
    settings = state.settings
    sites = account_sites(user)
    context["gates"] = fleet_status(
        state.store, context["now"], settings.offline_after_s, settings.tz, sites=sites
    )
    context["registered"] = registered_gates(state.store, sites)
    opened, waiting = open_alert_count(state.store, user)
    context["open_alerts"] = (opened, waiting) if opened else None  # the alerts badge
    # A manager releases a gate's door from here when a collector runs in this process.
    context["can_release_door"] = user.role >= Role.MANAGER and state.door_releaser is not None
    return context


def gate_context(request: Request, user: User, device_id: str) -> dict[str, Any] | None:
    """A gate's page's context: where it stands and its machine's readings (`gate_status`);
    None for a gate unknown, or of a site the account does not hold (a 404: no telling)."""
    state = web_state(request)
    context = page_context(request, user, "fleet")
    settings, sites = state.settings, account_sites(user)
    gates = fleet_status(
        state.store, context["now"], settings.offline_after_s, settings.tz, sites=sites
    )
    found = [gate for gate in gates if gate.device_id == device_id]
    if not found:
        return None
    context["gate_status"] = found[0]
    return context


def alerts_context(request: Request, user: User) -> dict[str, Any]:
    """The alerts page's context: for the page and its live region alike."""
    context = page_context(request, user, "alerts")
    context["alerts"] = alerts_for(web_state(request).store, user, context["now"])
    context["can_acknowledge"] = user.role >= Role.MANAGER
    return context


def occupancy_context(request: Request, user: User) -> dict[str, Any]:
    """The occupancy page's context: for the page and its live region alike."""
    state = web_state(request)
    context = page_context(request, user, "occupancy")
    context["sites"] = occupancy_today(
        state.store, state.settings.tz, clock=state.clock, sites=account_sites(user)
    )
    return context


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    templates = request.app.state.templates
    response: HTMLResponse = templates.TemplateResponse(
        request, template, context, status_code=status_code
    )
    return response


def now_utc(request: Request) -> datetime:
    return web_state(request).clock()
