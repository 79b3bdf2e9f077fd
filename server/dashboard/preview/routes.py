"""The preview's routes: start (or renew) and stop a gate's preview, its state and its latest
JPEG. For the gate actions' roles only (a technician, a manager, an admin; never a viewer, a
tracer or a metrics token), for gates of the account's sites; each start is an audit row naming
who previewed which gate, with its site. Frames are served from the relay's memory with
`Cache-Control: no-store` (the app sets it on every answer), never from a file.

    POST /api/v1/gates/{id}/preview        start, or renew the live session   -> PreviewState
    POST /api/v1/gates/{id}/preview/stop   stop                                -> PreviewState
    GET  /api/v1/gates/{id}/preview        the state: focus, its peak, the frame's number
    GET  /api/v1/gates/{id}/preview.jpg    the latest frame (404 when there is none)
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel

from protocol.topics import is_valid_device_id
from server.accounts.users import Account
from server.dashboard.preview.relay import RENEW_S, PreviewRelay
from server.dashboard.reports.access import account_sites, may_operate_gates
from server.store.audit import AuditLog
from server.store.database import Store

# The dashboard's role check for the gate actions (server/dashboard/auth.py: `GateOperator`'s
# `require_role(Role.MANAGER, technician=True)`): the account, or 401/403 as every route of
# the dashboard answers.
Guard = Callable[..., Any]


class PreviewState(BaseModel):
    device_id: str
    active: bool
    renew_s: int = RENEW_S
    seq: int | None = None
    focus: float | None = None
    peak: float | None = None
    width: int | None = None
    height: int | None = None
    codes: int | None = None
    jpeg_bytes: int | None = None
    age_s: float | None = None


def may_preview(account: Account) -> bool:
    """The gate actions' roles (server/dashboard/auth.py `GateOperator`): a technician, a
    manager, an admin."""
    return may_operate_gates(account)


def gate_site(store: Store, account: Account, device_id: str) -> str:
    """The site of a gate the account may act on; 404 for no such gate and for another site's
    (as the gate's page answers: another site's gates are not there for this account)."""
    known = {device.device_id: device.site_id for device in store.devices()}
    if not is_valid_device_id(device_id) or device_id not in known:
        raise HTTPException(404, "no such gate")
    sites = account_sites(account)
    site = known[device_id] or ""
    if sites is not None and site not in sites:
        raise HTTPException(404, "no such gate")
    return site


def preview_router(
    relay: PreviewRelay | None, guard: Guard, store: Store, audit: AuditLog
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/gates", tags=["preview"])
    Operator = Annotated[Account, Depends(guard)]

    def operator(account: Account, device_id: str) -> tuple[Account, str]:
        """The account and the gate's site, or the HTTP error."""
        if not may_preview(account):
            raise HTTPException(403, "a preview is for technicians, managers and admins")
        site = gate_site(store, account, device_id)
        if relay is None:
            raise HTTPException(503, "no collector in this process: no preview")
        return account, site

    def state(device_id: str) -> PreviewState:
        assert relay is not None
        held = relay.latest(device_id)
        if held is None:
            return PreviewState(device_id=device_id, active=relay.active(device_id))
        header = held.header
        return PreviewState(
            device_id=device_id,
            active=True,
            seq=header.seq,
            focus=header.focus,
            peak=header.peak,
            width=header.width,
            height=header.height,
            codes=header.codes,
            jpeg_bytes=len(held.jpeg),
            age_s=round(max(0.0, relay_age(relay, held.received_at)), 2),
        )

    @router.post("/{device_id}/preview", summary="Start or renew a gate's preview (audited)")
    def start(user: Operator, device_id: str) -> PreviewState:
        account, site = operator(user, device_id)
        assert relay is not None
        problem, new = relay.start(device_id, account.name)
        if new:
            details = {"ttl_s": relay.ttl_s, "fps": relay.fps}
            audit.record(account.name, "preview", device_id, details, site_id=site)
        if problem is not None:
            raise HTTPException(503, f"the gate was not asked: {problem}")
        return state(device_id)

    @router.post("/{device_id}/preview/stop", summary="Stop a gate's preview")
    def stop(user: Operator, device_id: str) -> PreviewState:
        account, _ = operator(user, device_id)
        assert relay is not None
        relay.stop(device_id, account.name)
        return state(device_id)

    @router.get("/{device_id}/preview", summary="A gate's preview: focus, its peak, the frame")
    def preview_state(user: Operator, device_id: str) -> PreviewState:
        operator(user, device_id)
        return state(device_id)

    @router.get("/{device_id}/preview.jpg", summary="A gate's latest preview frame (JPEG)")
    def frame(user: Operator, device_id: str) -> Response:
        operator(user, device_id)
        assert relay is not None
        held = relay.latest(device_id)
        if held is None:
            raise HTTPException(404, "no preview frame")
        return Response(held.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return router


def relay_age(relay: PreviewRelay, received_at: float) -> float:
    return relay.now() - received_at
