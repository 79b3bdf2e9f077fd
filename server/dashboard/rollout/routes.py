"""The updates page, `/updates`: the account's gates with their version, whether they are online
and their updater's last result; a form to roll a release out to them; the recent rollouts with
each gate's result. For the gate actions' roles (a technician, a manager, an admin: never a
viewer or a tracer), and only the gates of the account's sites: a rollout asked for by a manager
of one site never sends to another site's gate, and its results show them only their sites'
gates. Each rollout is audited (progress.py). The page advances the unfinished rollouts before
it shows them (progress.py says why).

    GET  /updates          the page (`?started=ID`: the rollout just started)
    POST /updates          start a rollout: version, gate (repeated) or all, only_outdated,
                           skip_offline, canary; 303 to the page
    GET  /releases/NAME    a signed bundle, for the gates' updater (bundles.py: no login)
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from server.accounts.users import Account
from server.dashboard.reports.access import account_sites, may_operate_gates
from server.dashboard.reports.fleet import fleet_status
from server.dashboard.rollout.bundles import bundle_url, offered
from server.dashboard.rollout.plan import RESULTS, GateNow, RolloutOptions, is_older
from server.dashboard.rollout.progress import advance, start_rollout
from server.dashboard.rollout.records import Rollout, RolloutGate, RolloutRows
from server.store.database import Store

# The dashboard's role check for the gate actions (server/dashboard/auth.py's `GateOperator`).
Guard = Callable[..., Any]
# The page rendered with the dashboard's template context (server/dashboard/app.py gives it):
# (request, account, the page's own context, status code) -> the page.
Render = Callable[[Request, Any, dict[str, Any], int], Response]
NOT_IN_ROLLOUTS = ("retired", "revoked")  # registrations whose gates a rollout leaves out


@dataclass(frozen=True)
class UpdateSettings:
    releases_dir: Path | None
    releases_url: str | None  # where gates fetch the bundles: RELEASES_URL/NAME
    offline_after_s: float
    tz: ZoneInfo


@dataclass(frozen=True)
class GateRow:
    """A gate as the page lists it (its texts are the gate's own: escaped where shown)."""

    device_id: str
    site_id: str
    location: str
    version: str
    online: bool
    update_result: dict[str, Any] | None


@dataclass(frozen=True)
class RolloutView:
    rollout: Rollout
    gates: list[RolloutGate]
    counts: dict[str, int]


def rollout_router(
    guard: Guard,
    store: Store,
    settings: UpdateSettings,
    clock: Callable[[], datetime],
    render: Render,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    Operator = Annotated[Account, Depends(guard)]

    def allowed(account: Account) -> frozenset[str] | None:
        if not may_operate_gates(account):
            raise HTTPException(403, "updates are for technicians, managers and admins")
        return account_sites(account)

    @router.get("/updates")
    def updates_page(request: Request, account: Operator, started: int | None = None) -> Response:
        sites = allowed(account)
        now = clock()
        advance(store, now)
        rows = RolloutRows(store.engine)
        rollouts = [_view(rollout, rows.gates(rollout.id, sites)) for rollout in rows.recent(sites)]
        versions = offered(settings.releases_dir)
        gates = _gates(store, settings, now, sites)
        newest = versions[0] if versions else None
        context = {
            "gates": gates,
            "versions": versions,
            "outdated": {g.device_id for g in gates if newest and is_older(g.version, newest)},
            "can_roll_out": bool(versions) and settings.releases_url is not None,
            "rollouts": rollouts,
            "started": started,
            "results": RESULTS,
        }
        return render(request, account, context, 200)

    @router.post("/updates")
    async def start_updates(request: Request, account: Operator) -> Response:
        sites = allowed(account)
        form = await request.form()
        version = str(form.get("version") or "")
        if settings.releases_url is None:
            # The server's config, not the request, is wrong: a conflict with its state.
            raise HTTPException(409, "no --releases-url: gates would not know where to fetch")
        if version not in offered(settings.releases_dir):
            raise HTTPException(400, "no such release on offer")
        now = clock()
        gates = _gates(store, settings, now, sites)
        mine = {gate.device_id for gate in gates}
        selected = None if form.get("all") == "true" else frozenset(
            str(name) for name in form.getlist("gate") if str(name) in mine
        )  # fmt: skip
        if selected is not None and not selected:
            raise HTTPException(400, "no gate of yours selected")
        options = RolloutOptions(
            target=version,
            only_outdated=form.get("only_outdated") == "true",
            skip_offline=form.get("skip_offline") == "true",
            canary=form.get("canary") == "true",
        )
        rollout_id = start_rollout(
            store,
            account.name,
            [GateNow(g.device_id, g.site_id, g.version, g.online) for g in gates],
            selected,
            options,
            bundle_url(settings.releases_url, version),
            now,
        )
        return RedirectResponse(f"/updates?started={rollout_id}", status_code=303)

    return router


def _gates(
    store: Store, settings: UpdateSettings, now: datetime, sites: frozenset[str] | None
) -> list[GateRow]:
    """The account's gates in service, with their updater's last result."""
    results = {
        device.device_id: (device.telemetry or {}).get("update_result")
        for device in store.devices(sites)
    }
    return [
        GateRow(
            device_id=gate.device_id,
            site_id=gate.site_id,
            location=gate.location,
            version=gate.version,
            online=gate.online,
            update_result=found if isinstance(found := results.get(gate.device_id), dict) else None,
        )
        for gate in sorted(
            fleet_status(store, now, settings.offline_after_s, settings.tz, sites=sites),
            key=lambda g: (g.site_id, g.device_id),
        )
        if gate.registration not in NOT_IN_ROLLOUTS
    ]


def _view(rollout: Rollout, gates: list[RolloutGate]) -> RolloutView:
    counts: dict[str, int] = {}
    for gate in gates:
        counts[gate.result] = counts.get(gate.result, 0) + 1
    return RolloutView(rollout, gates, counts)
