"""Live updates by short polling: the fragments that static/js/dashboard.js fetches every
LIVE_INTERVAL_S seconds (3 s; the issue allows up to 5) and puts in place of a page's live region.

Polling, not server-sent events: each poll is one short request through the same login, role and
masking as the page itself, works behind any proxy or load balancer (several `gatescan web`
processes share nothing but the database), and never holds a worker open. A fragment is the same
template part the page was rendered with, so a refreshed region looks exactly like a fresh page.
Without a session a poll gets the login redirect, and the script reloads the page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from protocol.topics import is_valid_device_id
from server.accounts.users import Role
from server.dashboard.auth import FleetViewer, User, require_role
from server.dashboard.reports.access import OtherSite, account_sites
from server.dashboard.reports.entries import view_entries
from server.dashboard.reports.fleet import gate_remote
from server.dashboard.state import web_state
from server.dashboard.views import (
    EntryQuery,
    alerts_context,
    fleet_context,
    occupancy_context,
    page_context,
    render,
)

router = APIRouter(prefix="/live", include_in_schema=False)

Viewer = Annotated[User, Depends(require_role(Role.VIEWER))]
LIVE_PAGE_SIZE = 50


@router.get("/fleet")
def fleet_fragment(request: Request, user: FleetViewer) -> Response:
    return render(request, "parts/fleet_body.html", fleet_context(request, user))


@router.get("/alerts")
def alerts_fragment(request: Request, user: FleetViewer) -> Response:
    return render(request, "parts/alerts_body.html", alerts_context(request, user))


@router.get("/gates/{device_id}")
def gate_activity_fragment(request: Request, user: FleetViewer, device_id: str) -> Response:
    """A gate's commands and answers and its recent warnings: 404 for a gate unknown or of a
    site the account does not hold, as its page."""
    gate = None
    if is_valid_device_id(device_id):
        context = page_context(request, user, "fleet")
        try:
            gate = gate_remote(
                web_state(request).store, device_id, account_sites(user), context["now"]
            )
        except OtherSite:
            gate = None
    if gate is None:
        return Response(status_code=404)
    context["gate"] = gate
    return render(request, "parts/gate_activity.html", context)


@router.get("/entries")
def entries_fragment(request: Request, user: Viewer) -> Response:
    """The first page of entries, masked, for the filter in the query string. A filter on a
    person is not served live: each look at a person is audited, a poll would flood the log."""
    state = web_state(request)
    query = EntryQuery.from_params(request.query_params)
    if query.person:
        return Response(status_code=204)
    context = page_context(request, user, "entries")
    result = view_entries(
        state.store,
        user,
        query.to_filter(state.settings.tz),
        1,
        False,
        page_size=LIVE_PAGE_SIZE,
        audit=state.audit,
    )
    context.update(
        query=query,
        result=result,
        unmasked=False,
        page_link=lambda n: "/entries" + query.query_string(page=n),
    )
    return render(request, "parts/entries_body.html", context)


@router.get("/occupancy")
def occupancy_fragment(request: Request, user: Viewer) -> Response:
    return render(request, "parts/occupancy_body.html", occupancy_context(request, user))
