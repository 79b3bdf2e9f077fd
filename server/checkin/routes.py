"""`/c/{token}`: the page a location's poster opens (issue 18). Public, no login, no script.

    GET  /c/{token}   the location's name and site, what is kept and why, the form; to a
                      phone that asked to be remembered (remember.py), "Xin chào, <name>" and
                      the buttons: one tap checks in (the health questions) or out
    POST /c/{token}   checked, stored as an entry (recording.py), then "Đã ghi nhận" with the
                      site's local time; a problem: the form again with the values kept (400).
                      Ticked `keep`: a self-declared pass shown on that screen (keeping.py);
                      ticked `remember`: the cookie that remembers the phone
    POST /c/{token}/forget   "Không phải tôi / Not me": the cookie deleted, back to the form

A token that names no enabled location (forged, altered, disabled, re-keyed) is a 404 page that
says only that the poster is not valid any more. The form's protection against other sites and
old forms is explained in stamps.py; its limits in limits.py: over one, 429 with Retry-After.

Nothing personal is logged, put in a URL or in an error: the log names the location only; the
phone reaches the limits as its keyed digest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from protocol.passes import parse_pass
from protocol.verdicts import Direction
from server.checkin.declaration import ANSWERS, phone_subject_id, read_declaration
from server.checkin.keeping import KEEP_DAYS, KeptPass, keep_pass, site_signs
from server.checkin.limits import CheckinLimits, SlidingWindow
from server.checkin.recording import SiteSecrets, checkin_event, checkins_today, record
from server.checkin.remember import (
    REMEMBER_COOKIE,
    REMEMBER_DAYS,
    Remembered,
    open_sealed,
    seal,
)
from server.checkin.site_form import DEFAULT_SITE, SiteCheckin, asked_questions, page_form
from server.checkin.stamps import form_stamp, stamp_problem
from server.checkin.words import LANGUAGES, words
from server.clock import Clock, in_zone
from server.locations.records import Location, Locations
from server.locations.urls import CHECKIN_PATH
from server.store.database import Store
from server.store.site_keys import PassRegistry

log = logging.getLogger("gatescan.checkin")

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGE_PREFIX = CHECKIN_PATH  # what a poster's URL holds (server/locations/urls.py)
MAX_BODY_BYTES = 8 * 1024  # the form is well under 1 KiB
LANGUAGE_COOKIE = "gatescan_lang"  # the dashboard's choice of someone not logged in
_TIME_FORMATS = {"vi": "%H:%M, %d/%m/%Y", "en": "%Y-%m-%d %H:%M"}
_DATE_FORMATS = {"vi": "%d/%m/%Y", "en": "%Y-%m-%d"}


def checkin_router(
    store: Store,
    *,
    tz: ZoneInfo,
    retention_days: int | None,
    limits: CheckinLimits,
    clock: Clock,
    monotonic: Callable[[], float],
    client_address: Callable[[Request], str],
    csrf_token: Callable[[Request], str],
    sites: Mapping[str, SiteCheckin] | None = None,
    secure_cookies: bool = False,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = Jinja2Templates(directory=HERE / "templates")
    locations = Locations(store.engine)
    secrets = SiteSecrets(store)
    by_address = SlidingWindow(limits.per_address, limits.window_s, monotonic)
    by_phone = SlidingWindow(limits.per_phone, limits.window_s, monotonic)
    site_forms = dict(sites or {})  # server.toml's [checkin.sites.*]; others: the defaults
    registry = PassRegistry(store.engine)

    def remembered(request: Request, location: Location) -> Remembered | None:
        now = clock()
        secret = secrets(location.site_id, now)
        value = request.cookies.get(REMEMBER_COOKIE)
        return open_sealed(value, location.site_id, secret, now)

    def still_kept(me: Remembered | None) -> KeptPass | None:
        """The remembered phone's pass, while the registry has it valid and unrevoked."""
        if me is None or not me.pass_code:
            return None
        kept = KeptPass(parse_pass(me.pass_code))
        row = registry.get(kept.pass_id)
        if row is None or row.revoked or row.valid_until <= clock():
            return None
        return kept

    def page(request: Request, lang: str, status: int, **context: Any) -> Response:
        context.setdefault("location", None)
        return templates.TemplateResponse(
            request, "checkin.html", {"lang": lang, "w": words(lang), **context}, status_code=status
        )

    def message(request: Request, lang: str, key: str, status: int, retry: int = 0) -> Response:
        response = page(request, lang, status, view="message", message=key, retry_after=retry)
        if retry:
            response.headers["retry-after"] = str(retry)
        return response

    def form(
        request: Request,
        lang: str,
        location: Location,
        token: str,
        status: int = 200,
        values: dict[str, str] | None = None,
        problems: dict[str, str] | None = None,
        me: Remembered | None = None,
    ) -> Response:
        first = location.direction.value
        kept = still_kept(me)
        return page(
            request,
            lang,
            status,
            view="form",
            location=location,
            token=token,
            other_lang="en" if lang == "vi" else "vi",
            csrf=csrf_token(request),
            stamp=form_stamp(location, int(clock().timestamp())),
            values=values or {},
            problems=problems or {},
            site=page_form(site_forms.get(location.site_id, DEFAULT_SITE), lang, words(lang)),
            answers=ANSWERS,
            directions=[first, *(d.value for d in Direction if d.value != first)],
            retention=_retention(lang, retention_days),
            me=me,
            me_phone_end=me.phone[-4:] if me else "",
            kept=kept,
            kept_until=_until(kept, lang, tz),
            offer_keep=kept is None and site_signs(store.engine, location.site_id),
            keep_days=KEEP_DAYS,
            remember_days=REMEMBER_DAYS,
        )

    @router.get(PAGE_PREFIX + "{token}", response_class=HTMLResponse)
    def checkin_page(request: Request, token: str, lang: str | None = None) -> Response:
        language = _language(lang, request)
        location = locations.by_token(token)
        if location is None:
            return message(request, language, "invalid", 404)
        return form(request, language, location, token, me=remembered(request, location))

    @router.post(PAGE_PREFIX + "{token}/forget")
    def forget(request: Request, token: str, lang: str | None = None) -> Response:
        """Not me: the phone forgets the person (the cookie deleted), whatever the token."""
        language = _language(lang, request)
        answer = RedirectResponse(f"{PAGE_PREFIX}{token}?lang={language}", status_code=303)
        answer.delete_cookie(
            REMEMBER_COOKIE, path=PAGE_PREFIX, secure=secure_cookies, httponly=True, samesite="lax"
        )
        return answer

    @router.post(PAGE_PREFIX + "{token}", response_class=HTMLResponse)
    async def checkin(request: Request, token: str) -> Response:
        sent = await request.form() if _small(request) else None
        fields = {k: v for k, v in (sent or {}).items() if isinstance(v, str)}
        language = _language(fields.get("lang"), request)
        location = locations.by_token(token)
        if location is None:
            return message(request, language, "invalid", 404)
        address = client_address(request)
        wait = by_address.retry_after(address)
        if wait:
            return message(request, language, "limit", 429, wait)
        by_address.count(address)
        now = clock()
        asked = asked_questions(site_forms.get(location.site_id, DEFAULT_SITE))
        me = remembered(request, location) if fields.get("remembered") == "1" else None
        if me is not None:  # one tap: who it is comes from the cookie, never from the form
            fields.update(me.form())
        reading = read_declaration(fields, location.direction, asked)
        problems = dict(reading.problems)
        stale = stamp_problem(fields.get("stamp", ""), location, int(now.timestamp()))
        if stale is not None:
            problems["stamp"] = stale
        if problems or reading.declaration is None:
            return form(request, language, location, token, 400, reading.values, problems, me)
        declared = reading.declaration
        secret = secrets(location.site_id, now)
        phone_key = f"{location.location_id}:{declared.direction.value}:"
        phone_key += phone_subject_id(declared.phone, secret)
        wait = by_phone.retry_after(phone_key)
        if wait:
            return message(request, language, "limit", 429, wait)
        if checkins_today(store, location, now, tz) >= limits.daily_cap:
            log.warning(
                "self check-in refused at location %s (site %s): its daily cap of %d is reached",
                location.location_id,
                location.site_id,
                limits.daily_cap,
            )
            return message(request, language, "full", 429)
        record(store, checkin_event(declared, location, now, secret), now)
        by_phone.count(phone_key)
        log.info(
            "self check-%s recorded at location %s (site %s)",
            declared.direction.value,
            location.location_id,
            location.site_id,
        )
        kept = still_kept(me)
        if fields.get("keep") == "1" and kept is None:
            kept = keep_pass(store.engine, location, declared.name, now)
            if kept is not None:
                log.info("a self-declared pass issued at location %s", location.location_id)
        local = in_zone(now, tz)
        answer = page(
            request,
            language,
            200,
            view="recorded",
            location=location,
            token=token,
            direction=declared.direction.value,
            local_time=local.strftime(_TIME_FORMATS[language]),
            iso_time=local.isoformat(timespec="seconds"),
            health_yes=declared.any_yes,
            kept=kept,
            kept_until=_until(kept, language, tz),
            kept_asked=fields.get("keep") == "1",
        )
        if fields.get("remember") == "1" or (me is not None and kept is not None):
            made = me.made if me is not None else now
            code = kept.signed.to_bytes() if kept is not None else b""
            sealed = seal(
                Remembered(declared.name, declared.phone, declared.cccd, made, code),
                location.site_id,
                secret,
            )
            answer.set_cookie(
                REMEMBER_COOKIE,
                sealed,
                max_age=REMEMBER_DAYS * 86400,
                path=PAGE_PREFIX,
                secure=secure_cookies,
                httponly=True,
                samesite="lax",
            )
        return answer

    return router


def _until(kept: KeptPass | None, lang: str, tz: ZoneInfo) -> str:
    return "" if kept is None else in_zone(kept.valid_until, tz).strftime(_DATE_FORMATS[lang])


def _language(asked: str | None, request: Request) -> str:
    for choice in (asked, request.cookies.get(LANGUAGE_COOKIE)):
        if choice in LANGUAGES:
            return str(choice)
    return "vi"


def _small(request: Request) -> bool:
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) <= MAX_BODY_BYTES


def _retention(lang: str, days: int | None) -> str:
    w = words(lang)
    return w["consent.retention_days"].format(days=days) if days else w["consent.retention_site"]
