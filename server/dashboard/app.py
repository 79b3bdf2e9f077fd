"""The dashboard's web app: pages, /api/v1 and login, around one store.

`create_web_app` is the table of contents: settings and dependencies in, a FastAPI app out.
Several processes may serve the same database (`gatescan web` behind a load balancer): sessions,
users and the audit log live in the database; only the login throttle is per process.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.release import __version__
from server.accounts.passwords import Hasher, LimitedHasher, PasswordHasher
from server.accounts.users import Account, Accounts, Role
from server.checkin.limits import CheckinLimits
from server.checkin.routes import STATIC as CHECKIN_STATIC
from server.checkin.routes import checkin_router
from server.clock import Clock, utc_now
from server.dashboard import api, auth
from server.dashboard.apidocs import api_docs_router
from server.dashboard.csrf import LOGIN_CSRF_COOKIE, verify_csrf
from server.dashboard.locations.routes import locations_router
from server.dashboard.login.throttle import LoginThrottle
from server.dashboard.login.turns import CheckTurns
from server.dashboard.preview.relay import PreviewRelay
from server.dashboard.preview.routes import gate_site, may_preview, preview_router
from server.dashboard.rollout.bundles import releases_router
from server.dashboard.rollout.routes import UpdateSettings, rollout_router
from server.dashboard.settings import WebSettings
from server.dashboard.state import BadToken, DoorReleaser, WebState, request_account, web_state
from server.metrics.families import Ingest, MetricSources
from server.metrics.routes import metrics_registry, metrics_router
from server.store.audit import AuditLog
from server.store.database import Store

log = logging.getLogger("gatescan.web")

WEB_DIR = Path(__file__).parent
OPENAPI_URL = "/api/openapi.json"

# No inline script or style anywhere, no other origin: a QR payload that reached a page as
# markup still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def create_web_app(
    store: Store,
    settings: WebSettings,
    *,
    clock: Clock = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    hasher: Hasher | None = None,
    door_releaser: DoorReleaser | None = None,
    ingest: Ingest | None = None,
    preview: PreviewRelay | None = None,
) -> FastAPI:
    """The dashboard for `store`. `clock` (UTC now) and `monotonic` drive session expiry and
    the login throttle, so tests can move time instead of waiting. `hasher` (default: the
    production scrypt) is run at most `settings.password_hashes_at_once` at a time.
    `door_releaser`: how a manager's "Release door" reaches a gate (a collector in the same
    process); None: the fleet page has no such button, and its route answers 503. `ingest`:
    the counters of a collector in the same process, for /metrics (server/metrics/); None:
    /metrics shows what the database says only. `preview`: each gate's aim-and-focus preview
    (server/dashboard/preview/; a collector in the same process); None: its routes answer 503."""
    from server.dashboard import pages, password_page
    from server.holder import routes as holder_routes

    app = FastAPI(
        title="gatescan dashboard API",
        version=__version__,
        docs_url=None,  # Swagger UI comes from a CDN and runs inline script: see apidocs.py
        redoc_url=None,
        openapi_url=OPENAPI_URL,
        dependencies=[Depends(verify_csrf)],
    )
    app.state.web = WebState(
        store=store,
        settings=settings,
        accounts=Accounts(
            store.engine,
            hasher=LimitedHasher(
                hasher or PasswordHasher(),
                at_once=settings.password_hashes_at_once,
                waiting=settings.password_hashes_waiting,
                wait_s=settings.password_hash_wait_s,
            ),
            clock=clock,
            session_idle=settings.session_idle,
            session_max_age=settings.session_max_age,
        ),
        audit=AuditLog(store.engine, clock=clock),
        limiter=LoginThrottle(
            free_tries=settings.login_failures_per_user,
            first_delay_s=settings.login_delay_first_s,
            max_delay_s=settings.login_delay_max_s,
            per_ip=settings.login_failures_per_ip,
            window_s=settings.login_window_s,
            clock=monotonic,
        ),
        login_turns=CheckTurns(
            at_once=settings.password_hashes_at_once,
            waiting=settings.login_checks_waiting,
            wait_s=settings.login_check_wait_s,
        ),
        clock=clock,
        door_releaser=door_releaser,
    )
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    from server.dashboard.csrf import csrf_token

    templates.env.globals["csrf_token"] = csrf_token
    app.state.templates = templates
    # Before the dashboard's /static, which would otherwise answer for it (404).
    app.mount("/static/checkin", StaticFiles(directory=CHECKIN_STATIC), name="checkin_static")
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(api_docs_router(OPENAPI_URL))
    app.include_router(pages.router)
    app.include_router(password_page.router)
    app.include_router(holder_routes.router)
    app.include_router(_checkin_router(app.state.web, monotonic))
    app.include_router(_metrics_router(app.state.web, ingest))
    operators = auth.require_role(Role.MANAGER, technician=True)  # auth.GateOperator's
    app.include_router(preview_router(preview, operators, store, app.state.web.audit))
    app.include_router(_preview_page_router())
    app.include_router(_rollout_router(app.state.web, operators))
    app.include_router(releases_router(settings.releases_dir))
    app.include_router(_locations_router(app.state.web))
    auth.install_auth_handlers(app)
    app.add_middleware(SecurityHeaders, secure_cookies=settings.secure_cookies)
    return app


def _metrics_router(state: WebState, ingest: Ingest | None) -> APIRouter:
    """/metrics (server/metrics/routes.py), its registry made once with the app."""
    settings = state.settings
    sources = MetricSources(
        store=state.store,
        offline_after_s=settings.offline_after_s,
        tz=settings.tz,
        ingest=ingest,
        failed_logins=state.failed_logins.snapshot,
        clock=state.clock,
    )

    return metrics_router(metrics_registry(sources), _who_asks)


def _checkin_router(state: WebState, monotonic: Callable[[], float]) -> APIRouter:
    """`/c/{token}`, the self check-in page (server/checkin/), public: no login."""
    from server.dashboard.csrf import csrf_token

    settings = state.settings
    limits = CheckinLimits(
        per_address=settings.checkin_per_address_per_min,
        per_phone=settings.checkin_per_phone_per_min,
        daily_cap=settings.checkin_daily_cap,
    )
    return checkin_router(
        state.store,
        tz=settings.tz,
        retention_days=settings.retention_days,
        limits=limits,
        clock=state.clock,
        monotonic=monotonic,
        client_address=auth.client_address,
        csrf_token=csrf_token,
        sites=settings.checkin_sites,
        secure_cookies=settings.secure_cookies,
    )


def _who_asks(request: Request) -> Account | None:
    try:
        return request_account(request)
    except BadToken:
        return None


def _preview_page_router() -> APIRouter:
    """`/gates/{id}/preview`: the "Preview / Aim" panel on a page of its own (the panel is
    templates/parts/preview_panel.html, for the gate's page too), for the gate actions' roles."""
    from server.dashboard.views import page_context, render

    router = APIRouter(include_in_schema=False)

    @router.get("/gates/{device_id}/preview")
    def preview_page(request: Request, device_id: str, user: auth.GateOperator) -> Response:
        if not may_preview(user):
            raise HTTPException(403, "a preview is for technicians, managers and admins")
        gate_site(web_state(request).store, user, device_id)
        context = page_context(request, user, "fleet")
        context["device_id"] = device_id
        return render(request, "gate_preview.html", context)

    return router


def _rollout_router(state: WebState, operators: Callable[..., Any]) -> APIRouter:
    """`/updates` (server/dashboard/rollout/routes.py), rendered as the other pages are."""
    from server.dashboard.views import page_context, render

    settings = state.settings

    def page(request: Request, user: Any, own: dict[str, Any], status: int) -> Response:
        context = page_context(request, user, "updates") | own
        return render(request, "updates.html", context, status_code=status)

    where = UpdateSettings(
        releases_dir=settings.releases_dir,
        releases_url=settings.releases_url,
        offline_after_s=settings.offline_after_s,
        tz=settings.tz,
    )
    return rollout_router(operators, state.store, where, state.clock, page)


def _locations_router(state: WebState) -> APIRouter:
    """`/locations` (server/dashboard/locations/routes.py), rendered as the other pages are: a
    viewer and up may look and print posters, a manager and up add and disable."""
    from server.dashboard.views import page_context, render

    def page(request: Request, user: Any, own: dict[str, Any], status: int) -> Response:
        context = page_context(request, user, "locations") | own
        return render(request, "locations.html", context, status_code=status)

    viewers, managers = auth.require_role(Role.VIEWER), auth.require_role(Role.MANAGER)
    public_url = state.settings.public_url
    return locations_router(
        viewers, managers, state.store, state.audit, public_url, state.clock, page
    )


class SecurityHeaders:
    """Adds the security headers to every response, `Cache-Control: no-store` to every one
    but static files (pages hold personal data), and the pre-login CSRF cookie when a login
    form was rendered (see csrf.py).

    It also answers an unhandled error itself: Starlette's own 500 comes from the outermost
    middleware, without these headers, and the server would log the exception's message, which
    for a database error holds the query's parameters (ID numbers, names).
    """

    def __init__(self, app: ASGIApp, *, secure_cookies: bool) -> None:
        self._app = app
        self._secure = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                token = scope.get("state", {}).get("new_login_csrf")
                if token:
                    headers.append((b"set-cookie", self._login_cookie(token).encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self._app(scope, receive, send_with_headers)
        except Exception as exc:
            log_unhandled(scope, exc)
            if started:  # a download failed half-way: nothing more can be said to the client
                return
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send_with_headers(
                {"type": "http.response.body", "body": b"Internal Server Error"}
            )

    def _login_cookie(self, token: str) -> str:
        secure = "; Secure" if self._secure else ""
        return f"{LOGIN_CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"


def log_unhandled(scope: Scope, exc: BaseException) -> None:
    """Log an unhandled error by its types and code lines only: never its message or the URL,
    which may hold personal data (/people/{id}, ?person=, a failed query's parameters)."""
    route = scope.get("route")
    where = getattr(route, "path", None) or "an unmatched path"
    chain: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 5:
        chain.append(type(cause).__qualname__)
        cause = cause.__cause__ or cause.__context__
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "unhandled %s in %s %s (message withheld)\n%s",
        " <- ".join(chain),
        scope.get("method", "?"),
        where,
        frames,
    )
