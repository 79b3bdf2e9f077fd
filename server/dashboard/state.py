"""What every request handler reaches through the app: the store, settings, accounts, audit
log, login throttle and turns, clock and search handles (one `WebState` on app.state.web), and
who is asking."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from server.accounts.users import Account, Accounts, Session
from server.clock import Clock
from server.dashboard.login.throttle import LoginThrottle
from server.dashboard.login.turns import CheckTurns
from server.dashboard.ratelimit import LoginRateLimiter
from server.dashboard.search_handles import SearchHandles
from server.dashboard.settings import WebSettings
from server.store.audit import AuditLog
from server.store.database import Store

SESSION_COOKIE = "gatescan_session"
LIVE_HEADER = "x-gatescan-live"  # sent by the pages' background refresh (static/js)
_UNSET = object()


PASSWORD_CHANGES_PER_WINDOW = 5  # per user, then 429 until the window moves on
PASSWORD_CHANGE_WINDOW_S = 15 * 60


# `release(device_id, by, command_id)`: a `release_door` command sent to the gate on the
# collector's connection (server/collector/commands.py); None once the broker took it, else why
# not. Only a process that runs a collector has one (`gatescan server`), not `gatescan web`.
DoorReleaser = Callable[[str, str, str], str | None]


class FailedLogins:
    """Failed logins since this process started, by why (`wrong_password`, `rate_limited`):
    what /metrics shows as gatescan_logins_failed_total. The audit log keeps each one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, why: str) -> None:
        with self._lock:
            self._counts[why] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class BadToken(Exception):
    """An Authorization header with an unknown, revoked or malformed token (answered 401)."""


@dataclass(frozen=True)
class WebState:
    store: Store
    settings: WebSettings
    accounts: Accounts
    audit: AuditLog
    limiter: LoginThrottle
    login_turns: CheckTurns
    clock: Clock
    door_releaser: DoorReleaser | None = None
    # Keys the digest that stands in a log line for a login name that is no user's (auth.py):
    # random per process and never written anywhere, so the digest cannot be reversed offline.
    log_key: bytes = field(default_factory=lambda: secrets.token_bytes(16), repr=False)
    # Keys the known-device cookie (login/devices.py): random per process, like log_key.
    device_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # Search terms behind the opaque `q` handles in page URLs (search_handles.py): per process,
    # each handle living as long as a session may.
    search_handles: SearchHandles = field(init=False, repr=False)
    # Password changes that went through, per user (password_page.py): each costs two scrypt
    # hashes, so a signed-in user cannot keep the hashing turns busy by changing it in a loop.
    password_changes: LoginRateLimiter = field(init=False, repr=False)
    failed_logins: FailedLogins = field(default_factory=FailedLogins, repr=False)

    def __post_init__(self) -> None:
        handles = SearchHandles(lifetime=self.settings.session_max_age, clock=self.clock)
        object.__setattr__(self, "search_handles", handles)
        changes = LoginRateLimiter(
            per_user=PASSWORD_CHANGES_PER_WINDOW,
            per_ip=10 * PASSWORD_CHANGES_PER_WINDOW,
            window_s=PASSWORD_CHANGE_WINDOW_S,
            clock=time.monotonic,
        )
        object.__setattr__(self, "password_changes", changes)


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def request_session(request: Request) -> Session | None:
    """The live session named by the request's cookie (looked up once per request)."""
    cached = getattr(request.state, "gatescan_session", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    secret = request.cookies.get(SESSION_COOKIE)
    # A page's own refresh (live.py's polling) is not the person at the screen: it must not keep
    # a dashboard left open logged in forever.
    active = LIVE_HEADER not in request.headers
    session = web_state(request).accounts.session(secret, active=active) if secret else None
    request.state.gatescan_session = session
    request.state.session_expired = secret is not None and session is None
    return session


def request_account(request: Request) -> Account | None:
    """Who is asking: a bearer token's account, else the session's user, else None.

    A request with an Authorization header is judged by it alone (BadToken if it is wrong):
    falling back to the cookie would make such a request need CSRF protection.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BadToken()
        account = web_state(request).accounts.account_for_token(token.strip())
        if account is None:
            raise BadToken()
        return account
    session = request_session(request)
    return session.account if session is not None else None


def session_key(request: Request) -> str:
    """What binds a handle to who is asking: the login session (or the API token) and the
    user's name, as a digest, so the store holds no session secret. "" without either."""
    header = request.headers.get("authorization")
    if header is not None:
        basis = "token\0" + header.strip()
        user = getattr(request.state, "user", None)
        name = getattr(user, "name", "")
    else:
        session = request_session(request)
        if session is None:
            return ""
        basis = "session\0" + session.secret
        name = session.account.name
    return hashlib.sha256(f"{name}\0{basis}".encode()).hexdigest()
