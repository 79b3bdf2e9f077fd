"""CSRF protection for cookie sessions (synchroniser token).

Every state-changing request (POST, PUT, PATCH, DELETE) that a browser could send with our
cookies must carry the session's token, as the form field `csrf_token` or the header
X-CSRF-Token. Before login there is no session: the login form's token is a random value also
set as a cookie (double submit), so a page elsewhere cannot log a victim in as its own user.
A request with `Authorization: Bearer` is authenticated by that header alone and never by a
cookie, so it needs no token: a browser does not add that header to another site's request.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from server.dashboard.state import request_session

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_CSRF_COOKIE = "gatescan_login_csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CsrfError(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=403, detail="CSRF token missing or wrong")


def csrf_token(request: Request) -> str:
    """The token to put in a form (hidden input `csrf_token`) for this request's visitor."""
    session = request_session(request)
    if session is not None:
        return session.csrf_token
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or getattr(request.state, "new_login_csrf", None)
    if not token:
        token = secrets.token_urlsafe(32)
        # The security middleware (app.py) sets it as a cookie on the response.
        request.state.new_login_csrf = token
    return str(token)


async def verify_csrf(request: Request) -> None:
    """An app-wide dependency: refuses a state-changing cookie request without the token."""
    if request.method in _SAFE_METHODS or request.headers.get("authorization"):
        return
    session = await run_in_threadpool(request_session, request)
    expected = session.csrf_token if session is not None else request.cookies.get(LOGIN_CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and _is_form(request):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfError()


def _is_form(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
