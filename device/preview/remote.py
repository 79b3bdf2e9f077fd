"""The server's preview requests (protocol/preview/wire.py `PreviewRequest`, on the gate's own
`preview_request` topic): checked here, then a session of the tap started, renewed or stopped.

A request is obeyed only when it is well formed and issued within REQUEST_MAX_AGE_S of the gate's
clock either way, as a command is: a request the broker held, or one replayed later, starts
nothing. A session's frames go to the gate's own `preview` topic (`publish`, QoS 0), which only
the server may read (the broker's ACL), and only while the session lives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from device.preview.tap import PreviewTap
from protocol.preview.wire import REQUEST_MAX_AGE_S, PreviewError, parse_request, request_age_s
from protocol.text import printable

log = logging.getLogger("gatescan.preview")


class RemotePreview:
    """`handle(payload)` on the MQTT thread: True when the request was carried out."""

    def __init__(
        self,
        tap: PreviewTap,
        *,
        publish: Callable[[bytes], object],
        now: Callable[[], datetime],
        max_age_s: float = REQUEST_MAX_AGE_S,
    ) -> None:
        self._tap = tap
        self._publish = publish
        self._now = now
        self._max_age_s = max_age_s

    def handle(self, payload: bytes) -> bool:
        try:
            request = parse_request(payload)
        except PreviewError as exc:
            log.warning("preview request refused: malformed (%s)", printable(str(exc), 300))
            return False
        age = request_age_s(request, self._now())
        if abs(age) > self._max_age_s:
            log.warning(
                "preview request %s refused: issued %.0f s %s by this gate's clock",
                request.session_id,
                abs(age),
                "ago" if age > 0 else "in the future",
            )
            return False
        if request.action == "stop":
            self._tap.stop(request.session_id)
            return True
        new = self._tap.start(
            request.session_id, ttl_s=request.ttl_s, fps=request.fps, send=self._publish
        )
        if new:
            log.warning("preview asked for by %s", printable(request.by, 64))
        return True
