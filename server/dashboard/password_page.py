"""A signed-in user changes their own password on the account page (POST /account/password).

Only a person logged in with a session may (an API token has no password to change). The
current password is checked as a login checks it, and counted in the same per-name limit, so
this form is no faster a way to guess a password than the login page. The new one must pass the
policy `Accounts.set_password` enforces for the CLI too; every session of the user ends, and
this one goes on under a new id (a new cookie). The change is audited (action "account", like
`gatescan user passwd`), and no password is ever logged, audited or put back into the page.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from server.accounts.password_policy import MIN_PASSWORD_CHARS, password_problem
from server.accounts.passwords import HashingBusy
from server.accounts.users import AccountError, Role
from server.dashboard.auth import (
    User,
    busy_retry_s,
    client_address,
    require_role,
    set_session_cookie,
    user_language,
)
from server.dashboard.i18n.translate import Translator
from server.dashboard.state import WebState, request_session, web_state
from server.dashboard.views import page_context, render

__all__ = ["CHANGED_NOTICE", "MAX_PASSWORD_CHARS", "router"]

log = logging.getLogger("gatescan.web.password")

router = APIRouter(include_in_schema=False)

Viewer = Annotated[User, Depends(require_role(Role.VIEWER, tracer=True))]  # a tracer too
# The login form takes a password of at most this many characters (auth.py): a longer one
# could be set but never used to log in.
MAX_PASSWORD_CHARS = 1024
FIELDS = ("current_password", "new_password", "new_password_again")
CHANGED_NOTICE = "/account?password=changed"  # the account page shows the notice for it


class _Refusal(Exception):
    """The change was refused: the page says why (`message`), with this status."""

    def __init__(self, message: str, status: int, retry_after_s: int | None = None) -> None:
        super().__init__(status)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


@router.post("/account/password")
async def change_password(request: Request, user: Viewer) -> Response:
    """The account page's form: current password, new password twice (and the CSRF token,
    checked app-wide before this runs)."""
    session = await run_in_threadpool(request_session, request)
    if user.via != "session" or session is None:  # a Bearer token: no password of its own
        t = Translator(user_language(request, user))
        return PlainTextResponse(t("account.password.session_only"), status_code=403)
    form = await request.form()
    values = {name: form.get(name) for name in FIELDS}
    typed = {name: value if isinstance(value, str) else "" for name, value in values.items()}
    try:
        fresh = await run_in_threadpool(_change, request, user, typed)
    except _Refusal as refusal:
        return await run_in_threadpool(_refused_page, request, user, refusal)
    response = RedirectResponse(CHANGED_NOTICE, status_code=303)
    set_session_cookie(response, web_state(request), fresh)
    return response


def _change(request: Request, user: User, typed: dict[str, str]) -> str:
    """Check the form and set the new password, or raise _Refusal (the t() keys are here so
    the catalogue test sees them)."""
    state = web_state(request)
    t = Translator(user_language(request, user))
    current, new, again = (typed[name] for name in FIELDS)
    # First what needs no password check: it tells nothing about the current password.
    if not current or not new or not again:
        raise _Refusal(t("account.password.missing"), 400)
    if len(new) > MAX_PASSWORD_CHARS or len(current) > MAX_PASSWORD_CHARS:
        raise _Refusal(t("account.password.too_long", n=MAX_PASSWORD_CHARS), 400)
    if new != again:
        raise _Refusal(t("account.password.mismatch"), 400)
    if new == current:
        raise _Refusal(t("account.password.same"), 400)
    if len(new) < MIN_PASSWORD_CHARS:  # the rule set_password applies, before any scrypt
        raise _Refusal(t("account.password.policy", n=MIN_PASSWORD_CHARS), 400)
    if password_problem(new, user.name) is not None:  # easy to guess
        raise _Refusal(t("account.password.weak"), 400)

    client = client_address(request)
    changes = state.password_changes.begin(user.name, client)  # counted if it goes through
    if changes > 0:
        log.warning("password changes too frequent for user %r from %s", user.name, client)
        raise _Refusal(t("account.password.too_often"), 429, int(changes) + 1)
    try:
        return _checked_change(state, t, user, client, current, new)
    except BaseException:
        state.password_changes.withdrawn(user.name, client)  # not changed: not counted
        raise


def _checked_change(
    state: WebState, t: Translator, user: User, client: str, current: str, new: str
) -> str:
    """The current password checked under the login's limit, then the new one set."""
    wait = state.limiter.begin(user.name, client)  # counted as a failure until it is not
    if wait > 0:
        log.warning("password change rate-limited for user %r from %s", user.name, client)
        raise _Refusal(t("account.password.rate_limited"), 429, math.ceil(wait))
    try:
        account = state.accounts.authenticate(user.name, current)
    except HashingBusy:
        state.limiter.withdrawn(user.name, client)  # not checked: neither failure nor success
        log.warning("password change from %s refused: too many password checks at once", client)
        raise _Refusal(t("account.password.busy"), 503, busy_retry_s(state)) from None
    if account is None:
        state.limiter.failed(user.name, client)  # the name's wait runs from now
        log.info("password change: wrong current password for user %r from %s", user.name, client)
        raise _Refusal(t("account.password.wrong_current"), 400)
    state.limiter.succeeded(user.name, client)

    try:
        # Every session of the user ends, this one too, and it goes on under a new id: whoever
        # held a copy of this session's cookie (why a password is changed, often) is out too.
        ended = state.accounts.set_password(user.name, new)
    except HashingBusy:
        log.warning("password change from %s refused: too many password hashes at once", client)
        raise _Refusal(t("account.password.busy"), 503, busy_retry_s(state)) from None
    except AccountError:  # the policy the CLI enforces too (accounts.py); the reason withheld
        raise _Refusal(t("account.password.policy", n=MIN_PASSWORD_CHARS), 400) from None
    fresh = state.accounts.start_session(account)
    details = {"change": "own password", "via": "web", "client": client, "sessions_ended": ended}
    state.audit.record(user.name, "account", user.name, details)
    log.info(
        "user %r changed their password; %d session(s) ended, this one renewed", user.name, ended
    )
    return fresh.secret


def _refused_page(request: Request, user: User, refusal: _Refusal) -> Response:
    """The account page again with the reason; the password fields are empty (never echoed)."""
    context = page_context(request, user, "account")
    # The language switch comes back to the account page, not to this POST-only address.
    context.update(saved=False, here="/account", password_error=refusal.message)
    response = render(request, "account.html", context, status_code=refusal.status)
    if refusal.retry_after_s is not None:
        response.headers["Retry-After"] = str(refusal.retry_after_s)
    return response
