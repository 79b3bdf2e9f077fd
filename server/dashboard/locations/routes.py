"""The locations page, `/locations` (issue 18): the self check-in locations of the account's
sites, each with its check-in URL, whether it takes check-ins, and its QR and poster to download;
a manager (or an admin) adds one, disables it (its posters stop working) or enables it again.
Everyone with a role on the site but a tracer or a technician may look and print the posters
(a viewer puts them up); a tracer's and a technician's work is elsewhere. Another site's
location is not found (404), as another site's gate is. Each change is audited with its site.

    GET  /locations                              the page (`?added=ID`: the one just made)
    POST /locations                              add: name, site, direction; 303 to the page
    POST /locations/{id}/disable | /enable       303 to the page
    GET  /locations/{id}/qr.png                  its QR (PNG)
    GET  /locations/{id}/poster.svg?size=a4|a5   its poster to print (SVG)
    GET  /locations/{id}/poster.pdf?size=a4|a5   the same poster as PDF (503 without fpdf2 or
                                                 the DejaVu fonts: the message says which)

Without the server's public address (`--public-url`) there is no URL to put on a poster: the
page says so and the downloads answer 409. Locations are not gates: the fleet page, its alerts
and the gate registry never read them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from protocol.verdicts import Direction
from server.accounts.users import Account, Role
from server.dashboard.reports.access import account_sites
from server.locations.posters import (
    POSTER_SIZES,
    PosterError,
    poster_file_name,
    poster_pdf,
    poster_svg,
    qr_png,
)
from server.locations.records import Location, LocationError, Locations
from server.locations.urls import checkin_url
from server.store.audit import AuditLog
from server.store.database import Store

# The dashboard's role checks (server/dashboard/auth.py's `require_role`): a viewer and up; a
# manager and up.
Guard = Callable[..., Any]
# The page rendered with the dashboard's template context (server/dashboard/app.py gives it):
# (request, account, the page's own context, status code) -> the page.
Render = Callable[[Request, Any, dict[str, Any], int], Response]
MAX_FORM_TEXT = 200


@dataclass(frozen=True)
class LocationRow:
    """A location as the page lists it (its name is the manager's text: escaped where shown)."""

    location: Location
    url: str | None  # None without a public address


def locations_router(
    viewers: Guard,
    managers: Guard,
    store: Store,
    audit: AuditLog,
    public_url: str | None,
    clock: Callable[[], datetime],
    render: Render,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    Viewer = Annotated[Account, Depends(viewers)]
    Manager = Annotated[Account, Depends(managers)]
    rows = Locations(store.engine)

    def mine(account: Account, location_id: str) -> Location:
        found = rows.get(location_id)
        sites = account_sites(account)
        if found is None or (sites is not None and found.site_id not in sites):
            raise HTTPException(404, "no such location")
        return found

    def url_of(location: Location) -> str:
        if public_url is None:
            raise HTTPException(409, "no --public-url: a poster would not know where to send")
        return checkin_url(public_url, location)

    @router.get("/locations")
    def locations_page(request: Request, account: Viewer, added: str | None = None) -> Response:
        sites = account_sites(account)
        shown = [
            LocationRow(found, checkin_url(public_url, found) if public_url else None)
            for found in rows.listed(sites)
        ]
        known = {row.location.location_id for row in shown}
        context = {
            "locations": shown,
            "public_url": public_url,
            "can_manage": account.role >= Role.MANAGER,
            # The sites a location may be added to: the account's, or (an admin) any, typed.
            "own_sites": None if sites is None else sorted(sites),
            "added": added if added in known else None,
            "poster_sizes": POSTER_SIZES,
        }
        return render(request, account, context, 200)

    @router.post("/locations")
    async def add_location(request: Request, account: Manager) -> Response:
        form = await request.form()
        name = str(form.get("name") or "")[:MAX_FORM_TEXT]
        site = str(form.get("site") or "").strip()[:MAX_FORM_TEXT]
        sites = account_sites(account)
        if not site:
            raise HTTPException(400, "a location belongs to a site: choose one")
        if sites is not None and site not in sites:
            raise HTTPException(403, "that site is not one of this account's")
        try:
            direction = Direction(str(form.get("direction") or "in"))
        except ValueError:
            raise HTTPException(400, "direction: in or out") from None
        try:
            made = rows.add(name, site_id=site, direction=direction, now=clock())
        except LocationError as exc:
            raise HTTPException(400, str(exc)) from None
        details = {"change": "location add", "name": made.name, "direction": direction.value}
        audit.record(account.name, "location", made.location_id, details, site_id=made.site_id)
        return RedirectResponse(f"/locations?added={made.location_id}", status_code=303)

    def set_enabled(account: Account, location_id: str, enabled: bool) -> Response:
        found = mine(account, location_id)
        rows.disable(found.location_id, enabled=enabled)
        change = "location enable" if enabled else "location disable"
        audit.record(
            account.name, "location", found.location_id, {"change": change}, site_id=found.site_id
        )
        return RedirectResponse("/locations", status_code=303)

    @router.post("/locations/{location_id}/disable")
    def disable_location(location_id: str, account: Manager) -> Response:
        return set_enabled(account, location_id, enabled=False)

    @router.post("/locations/{location_id}/enable")
    def enable_location(location_id: str, account: Manager) -> Response:
        return set_enabled(account, location_id, enabled=True)

    @router.get("/locations/{location_id}/qr.png")
    def location_qr(location_id: str, account: Viewer) -> Response:
        found = mine(account, location_id)
        return _download(
            qr_png(url_of(found)), "image/png", poster_file_name(found.location_id, "png")
        )

    @router.get("/locations/{location_id}/poster.svg")
    def location_poster(location_id: str, account: Viewer, size: str = "a4") -> Response:
        found = mine(account, location_id)
        if size not in POSTER_SIZES:
            raise HTTPException(400, "size: a4 or a5")
        svg = poster_svg(found, url_of(found), size)
        name = poster_file_name(found.location_id, "svg", size)
        return _download(svg.encode("utf-8"), "image/svg+xml; charset=utf-8", name)

    @router.get("/locations/{location_id}/poster.pdf")
    def location_poster_pdf(location_id: str, account: Viewer, size: str = "a4") -> Response:
        found = mine(account, location_id)
        if size not in POSTER_SIZES:
            raise HTTPException(400, "size: a4 or a5")
        try:
            pdf = poster_pdf(found, url_of(found), size)
        except PosterError as exc:
            raise HTTPException(503, str(exc)) from None
        name = poster_file_name(found.location_id, "pdf", size)
        return _download(pdf, "application/pdf", name)

    return router


def _download(body: bytes, media_type: str, file_name: str) -> Response:
    """A file to save (never shown inline: an SVG opened as a page of ours could run script)."""
    headers = {"content-disposition": f'attachment; filename="{file_name}"'}
    return Response(body, media_type=media_type, headers=headers)
