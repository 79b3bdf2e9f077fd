"""Dashboard accounts: users with roles, API tokens and login sessions (tables in tables.py).

Passwords are hashed with scrypt (server/accounts/passwords.py: memory-hard, 32 MiB per hash).
Session ids and API tokens are 256-bit random secrets kept only as SHA-256 digests: they carry full
entropy, so a fast digest is enough, and a copy of the database opens nothing.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.accounts.password_policy import password_problem
from server.accounts.passwords import Hasher, PasswordHasher
from server.clock import Clock, utc_now
from server.store.tables import api_tokens_table, users_table, web_sessions_table

__all__ = [
    "USER_ROLES",
    "Account",
    "AccountError",
    "Accounts",
    "Role",
    "Session",
    "TokenInfo",
    "UnknownAccount",
    "UserInfo",
]

NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
TOKEN_PREFIX = "gst_"
Language = Literal["vi", "en"]


class Role(enum.IntEnum):
    """What a user may do; each role may do everything the lower ones may, but for METRICS.

    METRICS is a token's alone (no user has it): it reads /metrics (server/metrics/) and
    nothing else, so a Prometheus server's token opens no page, no API and no personal data.
    Below VIEWER, every role check refuses it; /metrics itself lets METRICS and ADMIN in."""

    METRICS = 0  # a token for a Prometheus server: /metrics only
    VIEWER = 1  # fleet, occupancy, entries with personal data masked
    MANAGER = 2  # + unmasking, person lookup and contact tracing (all audited)
    ADMIN = 3  # + the audit log

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {name!r}: use viewer, manager, admin (or metrics, for a token)"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


# The roles a user (a person who logs in) may hold; a token may hold any role.
USER_ROLES = (Role.VIEWER, Role.MANAGER, Role.ADMIN)


class AccountError(ValueError):
    """A user or token that cannot be created or changed as asked (name taken, bad name)."""


class UnknownAccount(AccountError, LookupError):
    """No user (or token) has that name."""


@dataclass(frozen=True)
class Account:
    """Who is asking: a user logged in with a session, or a script with an API token."""

    name: str  # the user's name, or "token:NAME"
    role: Role
    language: Language | None  # None: the site's default
    via: Literal["session", "token"]


@dataclass(frozen=True)
class UserInfo:
    """A user as an administrator sees them (never the password hash)."""

    name: str
    role: Role
    language: Language | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class TokenInfo:
    """An API token as an administrator sees it (never the token or its digest)."""

    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class Session:
    """A login session as the server keeps it (the cookie holds only `secret`)."""

    secret: str
    account: Account
    csrf_token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Accounts:
    """Users, API tokens and sessions in the store's database."""

    def __init__(
        self,
        engine: Engine,
        *,
        hasher: Hasher | None = None,
        clock: Clock = utc_now,
        session_idle: timedelta = timedelta(minutes=30),
        session_max_age: timedelta = timedelta(hours=12),
    ) -> None:
        self._engine = engine
        self._hasher: Hasher = hasher or PasswordHasher()
        self._clock = clock
        self._idle = session_idle
        self._max_age = session_max_age

    @functools.cached_property
    def _decoy_hash(self) -> str:
        """Checked against when a name is unknown: a wrong name costs what a wrong password does."""
        return self._hasher.hash(secrets.token_hex(8))

    # --- users --------------------------------------------------------------------------------

    def add_user(
        self, name: str, role: Role, password: str, *, language: Language | None = None
    ) -> None:
        """Create a user; AccountError if the name is taken or the role is a token's alone."""
        if role not in USER_ROLES:
            raise AccountError(f"the {role.label} role is for API tokens, not users")
        _check_name(name)
        _check_password(password, name)
        row = {
            "name": name,
            "role": role.label,
            "password_hash": self._hasher.hash(password),
            "language": language,
            "created_at": self._clock(),
            "disabled": False,
        }
        self._insert_named(users_table, row, f"a user named {name!r} already exists")

    def set_language(self, name: str, language: Language | None) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(users_table).where(users_table.c.name == name).values(language=language)
            )

    def authenticate(self, name: str, password: str) -> Account | None:
        """The user if the name and password match an enabled user, else None."""
        row = self._user_row(name)
        if row is None:
            self._hasher.verify(password, self._decoy_hash)
            return None
        if not self._hasher.verify(password, row.password_hash) or row.disabled:
            return None
        return Account(row.name, Role.parse(row.role), row.language, via="session")

    def _user(self, name: str) -> Account | None:
        row = self._user_row(name)
        if row is None or row.disabled:
            return None
        return Account(row.name, Role.parse(row.role), row.language, via="session")

    def users(self) -> list[UserInfo]:
        """Every user, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(users_table).order_by(users_table.c.name)).all()
        return [_user_info(row) for row in rows]

    def user(self, name: str) -> UserInfo | None:
        row = self._user_row(name)
        return None if row is None else _user_info(row)

    def set_password(self, name: str, password: str, *, keep_session: str | None = None) -> int:
        """Give a user a new password and end their sessions but `keep_session` (the one that
        asked, if any): whoever knew the old password is logged out. Returns sessions ended."""
        _check_password(password, name)
        encoded = self._hasher.hash(password)
        with self._engine.begin() as conn:
            _update_user(conn, name, password_hash=encoded)
            return _end_user_sessions(conn, name, keep_session)

    def set_disabled(self, name: str, disabled: bool) -> int:
        """Disable (or enable) a user. Disabling ends every session of theirs at once; a
        disabled user cannot log in. Returns sessions ended."""
        with self._engine.begin() as conn:
            _update_user(conn, name, disabled=disabled)
            return _end_user_sessions(conn, name, None) if disabled else 0

    def _user_row(self, name: str) -> Row[Any] | None:
        with self._engine.connect() as conn:
            return conn.execute(select(users_table).where(users_table.c.name == name)).first()

    def _insert_named(self, table: Table, row: dict[str, Any], taken: str) -> None:
        """Insert a user's or a token's row; AccountError(`taken`) if the name is."""
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(table).values(row))
        except IntegrityError:
            raise AccountError(taken) from None

    # --- API tokens ---------------------------------------------------------------------------

    def create_token(self, name: str, role: Role) -> str:
        """A new API token for scripts; returned once, only its digest is kept."""
        _check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {
            "name": name,
            "role": role.label,
            "token_sha256": _digest(token),
            "created_at": self._clock(),
            "revoked": False,
        }
        self._insert_named(api_tokens_table, row, f"a token named {name!r} already exists")
        return token

    def account_for_token(self, token: str) -> Account | None:
        table = api_tokens_table
        with self._engine.begin() as conn:
            row = conn.execute(select(table).where(table.c.token_sha256 == _digest(token))).first()
            if row is None or row.revoked:
                return None
            now = self._clock()
            # At most once a minute: a script polling the API need not write (and fsync) each time.
            if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
                conn.execute(update(table).where(table.c.name == row.name).values(last_used_at=now))
        return Account(f"token:{row.name}", Role.parse(row.role), None, via="token")

    def revoke_token(self, name: str) -> bool:
        table = api_tokens_table
        with self._engine.begin() as conn:
            done = conn.execute(update(table).where(table.c.name == name).values(revoked=True))
        return done.rowcount > 0

    def tokens(self) -> list[TokenInfo]:
        """Every token, revoked ones too, by name."""
        table = api_tokens_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.name)).all()
        return [
            TokenInfo(row.name, Role.parse(row.role), row.created_at, row.last_used_at, row.revoked)
            for row in rows
        ]

    # --- sessions -----------------------------------------------------------------------------

    def start_session(self, account: Account) -> Session:
        """A new session for a user who just logged in (a new id: no session fixation)."""
        secret = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock()
        row = {
            "session_sha256": _digest(secret),
            "user_name": account.name,
            "csrf_token": csrf,
            "created_at": now,
            "last_seen_at": now,
        }
        with self._engine.begin() as conn:
            conn.execute(insert(web_sessions_table).values(row))
            conn.execute(
                update(users_table)
                .where(users_table.c.name == account.name)
                .values(last_login_at=now)
            )
        return Session(secret, account, csrf)

    def session(self, secret: str, *, active: bool = True) -> Session | None:
        """The live session with this secret, or None (unknown, idle too long, too old, or its
        user disabled). An `active` use (a person, not a page's background refresh) keeps it
        alive."""
        table = web_sessions_table
        key = table.c.session_sha256 == _digest(secret)
        now = self._clock()
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(key)).first()
        if row is None:
            return None
        if now - row.last_seen_at > self._idle or now - row.created_at > self._max_age:
            self.end_session(secret)
            return None
        account = self._user(row.user_name)
        if account is None:
            self.end_session(secret)
            return None
        # Written at most once a minute: a page polling every few seconds need not write each time.
        if active and now - row.last_seen_at > _TOUCH_EVERY:
            with self._engine.begin() as conn:
                conn.execute(update(table).where(key).values(last_seen_at=now))
        return Session(secret, account, row.csrf_token)

    def end_session(self, secret: str) -> None:
        table = web_sessions_table
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.session_sha256 == _digest(secret)))

    def purge_sessions(self) -> int:
        """Delete sessions that can no longer be used; return how many."""
        table = web_sessions_table
        now: datetime = self._clock()
        idle = table.c.last_seen_at < now - self._idle
        stale = idle | (table.c.created_at < now - self._max_age)
        with self._engine.begin() as conn:
            return int(conn.execute(delete(table).where(stale)).rowcount)


_TOUCH_EVERY = timedelta(seconds=60)


def _check_name(name: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name):
        raise AccountError(f"bad name {name!r}: 1-64 of A-Z a-z 0-9 _ . @ -")


def _check_password(password: str, name: str) -> None:
    problem = password_problem(password, name)
    if problem is not None:
        raise AccountError(problem)


def _user_info(row: Any) -> UserInfo:
    return UserInfo(
        row.name,
        Role.parse(row.role),
        row.language,
        bool(row.disabled),
        row.created_at,
        row.last_login_at,
    )


def _update_user(conn: Connection, name: str, **values: object) -> None:
    done = conn.execute(update(users_table).where(users_table.c.name == name).values(values))
    if done.rowcount == 0:
        raise UnknownAccount(f"no user named {name!r}")


def _end_user_sessions(conn: Connection, name: str, keep_secret: str | None) -> int:
    table = web_sessions_table
    query = delete(table).where(table.c.user_name == name)
    if keep_secret is not None:
        query = query.where(table.c.session_sha256 != _digest(keep_secret))
    return int(conn.execute(query).rowcount)
