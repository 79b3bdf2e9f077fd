"""The enrolment service's HTTP side (served over HTTPS by `gatescan server`).

    GET  /enrol/v1/ca.crt     the installation's CA (PEM): the gate pins it by its fingerprint
    POST /enrol/v1/exchange   an EnrolmentRequest -> 200 EnrolmentGrant, or 4xx EnrolmentRefusal

Status codes: 400 a body that is no enrolment request (`unsupported_handshake`), 403 a token
refused (`unknown_token`, `used`, `expired`, `revoked`), 413 a body over 16 KiB (read no
further), 429 `busy`: too many requests from one address (10 a minute, with a burst of 10: a
gate needs one or two), or the broker could not be reached; both with Retry-After. Every
answer is JSON but the CA's PEM; nothing else is served.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.enrolment import (
    CA_PATH,
    EXCHANGE_PATH,
    HANDSHAKE_VERSION,
    EnrolmentRefusal,
    EnrolmentRequest,
    RefusalReason,
)
from server.enrolment.exchange import EnrolmentRefused, EnrolmentService

MAX_BODY_BYTES = 16 * 1024
RATE_PER_MINUTE = 10.0
BURST = 10.0
RETRY_AFTER_S = 10
_MAX_TRACKED = 10_000  # addresses kept by the limiter; beyond, the quietest are forgotten
_STATUS: dict[str, int] = {
    "unknown_token": 403,
    "used": 403,
    "expired": 403,
    "revoked": 403,
    "unsupported_handshake": 400,
    "busy": 429,
}


class AddressLimiter:
    """A token bucket per client address: RATE_PER_MINUTE, BURST at once."""

    def __init__(
        self,
        per_minute: float = RATE_PER_MINUTE,
        burst: float = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        now = self._clock()
        with self._lock:
            level, then = self._buckets.get(address, (self._burst, now))
            level = min(self._burst, level + (now - then) * self._rate)
            if len(self._buckets) >= _MAX_TRACKED and address not in self._buckets:
                full = [key for key, (lvl, _) in self._buckets.items() if lvl >= self._burst - 1]
                for key in full or list(self._buckets)[: _MAX_TRACKED // 10]:
                    del self._buckets[key]
            if level < 1.0:
                self._buckets[address] = (level, now)
                return False
            self._buckets[address] = (level - 1.0, now)
            return True


def refusal(reason: RefusalReason, message: str) -> JSONResponse:
    body = EnrolmentRefusal(reason=reason, message=message[:500]).model_dump(mode="json")
    headers = {"Retry-After": str(RETRY_AFTER_S)} if reason == "busy" else None
    return JSONResponse(body, status_code=_STATUS[reason], headers=headers)


async def _body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY_BYTES (not read further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > MAX_BODY_BYTES:
            return None
    return bytes(chunks)


def parse_request(body: bytes) -> EnrolmentRequest | JSONResponse:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return refusal("unsupported_handshake", "the body is not JSON")
    if not isinstance(raw, dict):
        return refusal("unsupported_handshake", "the body is not a JSON object")
    if raw.get("handshake", HANDSHAKE_VERSION) != HANDSHAKE_VERSION:
        return refusal("unsupported_handshake", f"this server speaks handshake {HANDSHAKE_VERSION}")
    try:
        return EnrolmentRequest.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
        if fields == ["token"]:
            return refusal("unknown_token", "no such token on this server")
        return refusal("unsupported_handshake", f"not an enrolment request: {', '.join(fields)}")


def create_enrolment_app(
    service: EnrolmentService, ca_pem: str, limiter: AddressLimiter | None = None
) -> Starlette:
    limiter = limiter or AddressLimiter()

    async def ca_certificate(request: Request) -> Response:
        return Response(ca_pem, media_type="application/x-pem-file")

    async def exchange(request: Request) -> Response:
        peer = request.client.host if request.client else ""
        if not limiter.allow(peer):
            return refusal("busy", "too many requests from this address; try again later")
        body = await _body(request)
        if body is None:
            response = refusal("unsupported_handshake", "the request is too large")
            response.status_code = 413
            return response
        parsed = parse_request(body)
        if isinstance(parsed, Response):
            return parsed
        try:
            # The exchange waits on the database and the broker: not on the event loop.
            grant = await run_in_threadpool(service.exchange, parsed, peer)
        except EnrolmentRefused as refused:
            return refusal(refused.reason, refused.message)
        return JSONResponse(grant.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route(CA_PATH, ca_certificate, methods=["GET"]),
            Route(EXCHANGE_PATH, exchange, methods=["POST"]),
        ]
    )
