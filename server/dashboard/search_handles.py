"""Opaque handles that stand in a URL for what a person searched for (an ID number, a name).

A URL ends up in the browser's history on a shared office PC, in bookmarks and in proxy logs, so
the dashboard's pages never put a search term in one: a search form is POSTed, the term is kept
here, and the answer redirects to a page whose URL holds only a random handle (`?q=...`). The
handle resolves for the login session that made it and no other (another user, another
session, a login after this one ended), and lives for the session's absolute lifetime from its
last use. Each session keeps at most 500 (its own oldest go first), all together 20,000.

The store is in memory and per process: after a restart, or behind a load balancer on another
`gatescan web` process, a handle resolves to nothing and the page asks for the search again.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.clock import Clock, utc_now

DEFAULT_MAX_HANDLES = 20_000
# Per login session: a page of entries mints one for each person on it; more than this and the
# session's own oldest go first, so one busy (or hostile) session cannot push out the others'.
DEFAULT_MAX_PER_SESSION = 500
HANDLE_BYTES = 16  # 22 URL-safe characters
MAX_HANDLE_LENGTH = 64  # longer `q` values are not looked up at all


@dataclass
class _Entry:
    session_key: str
    term: str
    expires_at: datetime


class SearchHandles:
    """Search terms behind random handles, per login session, thread-safe.

    Kept in the order they were last used, which with one lifetime for all is also the order
    they expire in: the expired ones and, over `max_handles`, the oldest, go from the front.
    Hiding the same term again in the same session gives the same handle (an entries page
    mints one for each person on it).
    """

    def __init__(
        self,
        *,
        lifetime: timedelta,
        clock: Clock = utc_now,
        max_handles: int = DEFAULT_MAX_HANDLES,
        max_per_session: int = DEFAULT_MAX_PER_SESSION,
    ) -> None:
        if max_handles < 1 or max_per_session < 1:
            raise ValueError("max_handles and max_per_session must be at least 1")
        self._lifetime = lifetime
        self._clock = clock
        self._max = max_handles
        self._max_per_session = max_per_session
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # handle -> entry
        self._by_term: dict[tuple[str, str], str] = {}  # (session key, term) -> handle
        # session key -> its handles, oldest use first
        self._by_session: dict[str, OrderedDict[str, None]] = {}

    def hide(self, session_key: str, term: str) -> str:
        """A handle for `term` that only `session_key` can turn back into it."""
        if not session_key:
            raise ValueError("a handle needs a session")
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            handle = self._by_term.get((session_key, term))
            if handle is None:
                handle = secrets.token_urlsafe(HANDLE_BYTES)
                while handle in self._entries:  # pragma: no cover - 128 random bits
                    handle = secrets.token_urlsafe(HANDLE_BYTES)
                self._entries[handle] = _Entry(session_key, term, now + self._lifetime)
                self._by_term[(session_key, term)] = handle
                own = self._by_session.setdefault(session_key, OrderedDict())
                own[handle] = None
                while len(own) > self._max_per_session:
                    self._forget(next(iter(own)))
                while len(self._entries) > self._max:
                    self._forget(next(iter(self._entries)))
            else:
                self._touch(handle, now)
            return handle

    def reveal(self, session_key: str, handle: str) -> str | None:
        """The term behind `handle` if `session_key` made it and it has not expired."""
        if not session_key or not handle or len(handle) > MAX_HANDLE_LENGTH:
            return None
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            entry = self._entries.get(handle)
            if entry is None or not hmac.compare_digest(entry.session_key, session_key):
                return None
            self._touch(handle, now)
            return entry.term

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _touch(self, handle: str, now: datetime) -> None:
        entry = self._entries[handle]
        entry.expires_at = now + self._lifetime
        self._entries.move_to_end(handle)
        self._by_session[entry.session_key].move_to_end(handle)

    def _drop_expired(self, now: datetime) -> None:
        while self._entries:
            handle, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            self._forget(handle)

    def _forget(self, handle: str) -> None:
        entry = self._entries.pop(handle)
        self._by_term.pop((entry.session_key, entry.term), None)
        own = self._by_session[entry.session_key]
        del own[handle]
        if not own:
            del self._by_session[entry.session_key]
