"""Who may see what: login and logout, the session cookie, and the role checks every route uses.

`current_user` is the dependency for "logged in" (a session cookie or an API token);
`require_role(Role.MANAGER)` for "logged in with at least this role". A page asked for without
a login redirects to /login?next=...; an /api/v1 request gets 401. A role too low gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from server.accounts.passwords import HashingBusy
from server.accounts.users import Account, Role
from server.dashboard.csrf import LOGIN_CSRF_COOKIE, CsrfError, csrf_token
from server.dashboard.i18n.translate import (
    LANGUAGE_COOKIE,
    Translator,
    choose_language,
    i18n_context,
)
from server.dashboard.login.devices import (
    DEVICE_COOKIE,
    DEVICE_DAYS,
    device_cookie,
    known_device,
)
from server.dashboard.login.throttle import canonical_name
from server.dashboard.reports.access import NotAllowed
from server.dashboard.state import (
    SESSION_COOKIE,
    BadToken,
    WebState,
    request_account,
    request_session,
    web_state,
)

__all__ = ["User", "current_user", "install_auth_handlers", "require_role", "router"]

log = logging.getLogger("gatescan.web.auth")

User = Account  # name, role, language (None: the site's default), via ("session" / "token")
API_PREFIX = "/api/"


class LoginRequired(Exception):
    """No valid credentials: a page redirects to the login form, the API answers 401."""


def current_user(request: Request) -> User:
    try:
        account = request_account(request)
    except BadToken:
        raise LoginRequired() from None
    if account is None:
        raise LoginRequired()
    if account.role == Role.METRICS:  # a Prometheus token reads /metrics, nothing else
        raise NotAllowed(Role.VIEWER, "this request")
    request.state.user = account
    return account


def require_role(role: Role, *, tracer: bool = False) -> Callable[..., User]:
    """A dependency: the user, if their role is at least `role` (or is the tracer's, where
    `tracer` lets it in: the tracing routes); else 403."""

    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role < role and not (tracer and user.role == Role.TRACER):
            raise NotAllowed(role, "this request")
        return user

    check.min_role = role  # type: ignore[attr-defined]  # read by the route-coverage tests
    check.tracer = tracer  # type: ignore[attr-defined]
    return check


def user_language(request: Request, user: User | None) -> str:
    settings = web_state(request).settings
    return choose_language(
        user_language=user.language if user else None,
        cookie=request.cookies.get(LANGUAGE_COOKIE),
        default=settings.default_language,
    )


# --- the login form ---------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_form(request: Request, next: str = "/", expired: bool = False) -> Response:
    session = request_session(request)
    if session is not None:
        return RedirectResponse(page_after_login(next, session.account), status_code=303)
    return _login_page(request, next, "login.expired" if expired else None, 200)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Async so that a login waiting for its turn at scrypt holds no worker thread; what
    touches the database runs in the thread pool."""
    state = web_state(request)
    client = client_address(request)
    cookie = request.cookies.get(DEVICE_COOKIE)
    device = known_device(state.device_key, username, cookie, state.clock())
    rank = state.limiter.failures_from(client)  # a flooding address waits behind the others
    wait = state.limiter.begin(username, client, device)  # a failure until it is not
    if wait > 0:
        return await run_in_threadpool(_rate_limited, request, username, client, next, wait)
    try:
        account = await state.login_turns.run(
            lambda: state.accounts.authenticate(username, password), rank
        )
    except HashingBusy:
        state.limiter.withdrawn(username, client, device)  # never checked: no failure
        log.warning("login from %s refused: too many password checks at once", client)
        retry = max(1, math.ceil(state.settings.login_check_wait_s))
        return await run_in_threadpool(_retry_later, request, next, "login.busy", {}, 503, retry)
    attempt = _Attempt(username, client, device)
    return await run_in_threadpool(_checked, request, attempt, next, account)


@dataclass(frozen=True)
class _Attempt:
    username: str
    client: str
    device: str  # a known device's id (login/devices.py), or ""


def _rate_limited(request: Request, username: str, client: str, next: str, wait: float) -> Response:
    state = web_state(request)
    who = login_name_for_log(state, username)
    log.warning("login rate-limited for %s from %s", who, client)
    state.audit.record(who, "login_failed", "", {"client": client, "why": "rate_limited"})
    state.failed_logins.add("rate_limited")
    after_s = max(1, math.ceil(wait))
    return _retry_later(request, next, *_how_long(after_s), 429, after_s)


def _how_long(after_s: int) -> tuple[str, dict[str, int]]:
    """What the login page says of a wait: seconds (a name's), or minutes (an address's)."""
    if after_s < 120:
        return "login.rate_limited", {"n": after_s}
    return "login.rate_limited_minutes", {"n": math.ceil(after_s / 60)}


def _checked(request: Request, attempt: _Attempt, next: str, account: Account | None) -> Response:
    """The answer to a login whose password was checked: the login page again, or a session
    (and the browser known as this user's device from now on)."""
    state = web_state(request)
    username, client = attempt.username, attempt.client
    if account is None:
        state.limiter.failed(username, client, attempt.device)  # the wait runs from now
        who = login_name_for_log(state, username)
        log.info("failed login for %s from %s", who, client)
        state.audit.record(who, "login_failed", "", {"client": client, "why": "wrong_password"})
        state.failed_logins.add("wrong_password")
        return _login_page(request, next, "login.failed", 401)
    state.limiter.succeeded(username, client, attempt.device)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        state.accounts.end_session(old)
    state.accounts.purge_sessions()  # ended by idle time or age: nothing else deletes them
    session = state.accounts.start_session(account)
    state.audit.record(account.name, "login", "", {"client": client})
    response = RedirectResponse(page_after_login(next, account), status_code=303)
    set_session_cookie(response, state, session.secret)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    expires = state.clock() + timedelta(days=DEVICE_DAYS)
    response.set_cookie(
        DEVICE_COOKIE,
        device_cookie(state.device_key, username, expires),
        max_age=DEVICE_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=state.settings.secure_cookies,
        path="/login",
    )
    return response


def client_address(request: Request) -> str:
    """The client's address, as the login limits count and the logs name it: the socket's
    peer, or behind a proxy named by `--forwarded-allow-ips` the address it forwarded for."""
    return request.client.host if request.client else "unknown"


def busy_retry_s(state: WebState) -> int:
    """Retry-After for a password change refused because the hashing turns were all taken."""
    return max(1, math.ceil(state.settings.password_hash_wait_s))


def set_session_cookie(response: Response, state: WebState, secret: str) -> None:
    """The session cookie: script cannot read it, other sites cannot send it."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=state.settings.secure_cookies,
        path="/",
    )


@router.post("/logout")
def logout(request: Request) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    session = request_session(request)
    if secret:
        web_state(request).accounts.end_session(secret)
    if session is not None:
        web_state(request).audit.record(session.account.name, "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def login_name_for_log(state: WebState, username: str) -> str:
    """How a log line names the user of a failed login: a user's own name if there is such a
    user (a name, not a secret), else "unknown user" and a short digest keyed by a per-process
    secret. The name field may hold a password typed in the wrong field: never logged as typed,
    yet repeated tries of one name still show up as one digest."""
    info = state.accounts.user(username)
    if info is not None:
        return f"user {info.name!r}"
    digest = hmac.new(state.log_key, canonical_name(username).encode(), hashlib.sha256)
    return f"unknown user #{digest.hexdigest()[:8]}"


def _retry_later(
    request: Request,
    next: str,
    error: str,
    values: dict[str, int],
    status: int,
    after_s: int,
) -> Response:
    response = _login_page(request, next, error, status, values)
    response.headers["Retry-After"] = str(after_s)
    return response


def _login_page(
    request: Request,
    next: str,
    error: str | None,
    status: int,
    values: dict[str, int] | None = None,
) -> Response:
    state = web_state(request)
    context: dict[str, Any] = {
        **i18n_context(user_language(request, None), state.settings.tz),
        "error": error,
        "error_values": values or {},
        "next": page_after_login(next),
        "csrf_token": csrf_token(request),
        "user": None,
    }
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "login.html", context, status_code=status)


def safe_next(target: str | None) -> str:
    """A path on this site only (no open redirect): where the language switch returns to."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


# Where a login may lead: the pages, never a download, a feed or the API (a link that logs a
# manager in straight into an unmasked export would be a download the manager never asked for).
NEXT_PAGES = frozenset({"/", "/entries", "/tracing", "/occupancy", "/export", "/audit", "/account"})


TRACER_PAGES = frozenset({"/tracing", "/account"})  # the pages a tracer may open


def page_after_login(target: str | None, account: Account | None = None) -> str:
    """Where a login leads: one of this site's pages (NEXT_PAGES, with its query), else "/";
    for a tracer one of theirs, else /tracing."""
    target = safe_next(target)
    pages, home = NEXT_PAGES, "/"
    if account is not None and account.role == Role.TRACER:
        pages, home = TRACER_PAGES, "/tracing"
    return target if urlsplit(target).path in pages else home


# --- answers to missing credentials, low roles and bad CSRF tokens ----------------------------


def install_auth_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LoginRequired, _login_required)  # type: ignore[arg-type]
    app.add_exception_handler(NotAllowed, _not_allowed)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfError, _bad_csrf)  # type: ignore[arg-type]


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


async def _login_required(request: Request, exc: LoginRequired) -> Response:
    if _is_api(request) or request.headers.get("authorization"):
        return JSONResponse(
            {"detail": "authentication required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = _login_target(request)
    expired = bool(getattr(request.state, "session_expired", False))
    flag = "&expired=1" if expired else ""
    response = RedirectResponse(f"/login?next={quote(target, safe='')}{flag}", status_code=303)
    if expired:
        response.delete_cookie(SESSION_COOKIE, path="/")  # said once, not on every later page
    return response


# Query fields that may hold an ID number or a name (old bookmarks): accepted, never put in a
# URL of ours (the browser's history, a proxy's log).
PERSONAL_PARAMS = frozenset({"person", "subject"})


def without_personal_params(request: Request) -> str:
    """The request's path and query, less the fields that may hold an ID number or a name."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in PERSONAL_PARAMS]
    return request.url.path + (f"?{urlencode(kept)}" if kept else "")


def _login_target(request: Request) -> str:
    """The page to come back to after login (a path too may hold an ID: /people/{id})."""
    if request.url.path.startswith("/people/"):
        return "/tracing"
    return without_personal_params(request)


async def _not_allowed(request: Request, exc: NotAllowed) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": str(exc)}, status_code=403)
    user = getattr(request.state, "user", None)
    return PlainTextResponse(Translator(user_language(request, user))("error.forbidden"), 403)


async def _bad_csrf(request: Request, exc: CsrfError) -> Response:
    if request.url.path == "/login" and request.method == "POST":
        form = await request.form()
        next_value = form.get("next")
        next_path = next_value if isinstance(next_value, str) else "/"
        return await run_in_threadpool(_login_page, request, next_path, "login.csrf", 403)
    if _is_api(request):
        return JSONResponse({"detail": exc.detail}, status_code=403)
    user = getattr(request.state, "user", None)
    return PlainTextResponse(Translator(user_language(request, user))("login.csrf"), 403)
