"""Dashboard accounts: users with roles, API tokens and login sessions (tables in tables.py).

Passwords are hashed with scrypt (server/accounts/passwords.py: memory-hard, 32 MiB per hash).
Session ids and API tokens are 256-bit random secrets kept only as SHA-256 digests: they carry full
entropy, so a fast digest is enough, and a copy of the database opens nothing.

Sites: an admin holds every site. A viewer, manager or tracer (user or token) holds its role on
the sites named for it (`--site`, table account_sites; `set_sites` changes them), or, when none
are named, on every site: an installation of one site needs no names, and accounts made before
sites were named keep working. `Account.sites` is None for "every site"; the reports put it into
their queries. An account's sites are read at each request, so a change reaches its sessions and
tokens at their next one.

E-mail: a user may have an address (`email`); the alerts of the sites a manager holds are mailed
there (`alert_recipients`, server/alerts/), and an admin's too when the alerts file says so.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.accounts.password_policy import password_problem
from server.accounts.passwords import Hasher, PasswordHasher
from server.clock import Clock, utc_now
from server.store.tables import (
    account_sites_table,
    api_tokens_table,
    users_table,
    web_sessions_table,
)

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
# One address, nothing a mail header could be split at: local@domain.tld, no spaces or commas.
EMAIL_PATTERN = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+"
MAX_EMAIL = 254
TOKEN_PREFIX = "gst_"
MAX_SITE_ID = 200  # the entries' site_id column
Language = Literal["vi", "en"]
Kind = Literal["user", "token"]


class Role(enum.IntEnum):
    """What a user may do; each role may do everything the lower ones may, but for METRICS and
    TRACER, which sit below VIEWER, outside the ladder: every role check refuses them but the
    routes that name them.

    METRICS is a token's alone (no user has it): it reads /metrics (server/metrics/) and
    nothing else, so a Prometheus server's token opens no page, no API and no personal data;
    /metrics itself lets METRICS and ADMIN in.

    TRACER (a province's contact tracer) runs contact tracing across its sites (every site when
    none are named), each trace audited with its reason, and nothing else: no fleet, no entries,
    no unmasking, no export, no audit log. The tracing routes name it (`require_role(...,
    tracer=True)`); docs/security.md, "The tracer role"."""

    TRACER = -1  # contact tracing (with a reason), nothing else
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
                f"unknown role {name!r}: use viewer, manager, admin, tracer"
                " (or metrics, for a token)"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


# The roles a user (a person who logs in) may hold; a token may hold any role.
USER_ROLES = (Role.VIEWER, Role.MANAGER, Role.ADMIN, Role.TRACER)


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
    # The sites its role holds on; None: every site (an admin always, see the module's doc).
    sites: frozenset[str] | None = None

    def sees_site(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites


@dataclass(frozen=True)
class UserInfo:
    """A user as an administrator sees them (never the password hash)."""

    name: str
    role: Role
    language: Language | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    sites: frozenset[str] | None = None  # None: every site
    email: str | None = None  # where alerts are mailed (a manager's, an admin's)


@dataclass(frozen=True)
class TokenInfo:
    """An API token as an administrator sees it (never the token or its digest)."""

    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    sites: frozenset[str] | None = None  # None: every site


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
        self,
        name: str,
        role: Role,
        password: str,
        *,
        language: Language | None = None,
        sites: Iterable[str] = (),
        email: str | None = None,
    ) -> None:
        """Create a user holding `role` on `sites` (none named: every site); AccountError if
        the name is taken, the role is a token's alone, sites are named for an admin, or the
        e-mail address is not one."""
        if role not in USER_ROLES:
            raise AccountError(f"the {role.label} role is for API tokens, not users")
        _check_name(name)
        named = _checked_sites(role, sites)
        _check_password(password, name)
        if email is not None:
            _check_email(email)
        row = {
            "email": email,
            "name": name,
            "role": role.label,
            "password_hash": self._hasher.hash(password),
            "language": language,
            "created_at": self._clock(),
            "disabled": False,
        }
        self._insert_named(users_table, row, f"a user named {name!r} already exists", named)

    def set_language(self, name: str, language: Language | None) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(users_table).where(users_table.c.name == name).values(language=language)
            )

    def set_email(self, name: str, email: str | None) -> None:
        """Set (None: remove) a user's e-mail address; UnknownAccount, AccountError if bad."""
        if email is not None:
            _check_email(email)
        with self._engine.begin() as conn:
            _update_user(conn, name, email=email)

    def alert_recipients(self, admins: bool = False) -> dict[str, frozenset[str] | None]:
        """{address: the sites whose alerts it gets}: each enabled manager with an address,
        for the sites they hold (None: every site, the installation's own alerts too); the
        admins' too when `admins`. An address two users share gets the sites of both."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(users_table).where(
                    users_table.c.email.is_not(None), users_table.c.disabled.is_(False)
                )
            ).all()
        found: dict[str, frozenset[str] | None] = {}
        for row in rows:
            role = Role.parse(row.role)
            if role < Role.MANAGER or (role >= Role.ADMIN and not admins):
                continue
            sites = self._user_sites(row)
            address = str(row.email)
            if address in found:
                before = found[address]
                sites = None if before is None or sites is None else before | sites
            found[address] = sites
        return found

    def authenticate(self, name: str, password: str) -> Account | None:
        """The user if the name and password match an enabled user, else None."""
        row = self._user_row(name)
        if row is None:
            self._hasher.verify(password, self._decoy_hash)
            return None
        if not self._hasher.verify(password, row.password_hash) or row.disabled:
            return None
        return self._user_account(row)

    def _user(self, name: str) -> Account | None:
        row = self._user_row(name)
        if row is None or row.disabled:
            return None
        return self._user_account(row)

    def _user_account(self, row: Row[Any]) -> Account:
        role = Role.parse(row.role)
        sites = self._sites("user", row.name, role)
        return Account(row.name, role, row.language, via="session", sites=sites)

    def users(self) -> list[UserInfo]:
        """Every user, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(users_table).order_by(users_table.c.name)).all()
        return [_user_info(row, self._user_sites(row)) for row in rows]

    def user(self, name: str) -> UserInfo | None:
        row = self._user_row(name)
        if row is None:
            return None
        return _user_info(row, self._user_sites(row))

    def _user_sites(self, row: Row[Any]) -> frozenset[str] | None:
        return self._sites("user", row.name, Role.parse(row.role))

    def _sites(self, kind: Kind, name: str, role: Role) -> frozenset[str] | None:
        """The sites an account holds its role on; None: every site (an admin's, always)."""
        if role >= Role.ADMIN:
            return None
        table = account_sites_table
        query = select(table.c.site_id).where(table.c.kind == kind, table.c.name == name)
        with self._engine.connect() as conn:
            named = frozenset(str(site) for site in conn.scalars(query))
        return named or None

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

    def _insert_named(
        self, table: Table, row: dict[str, Any], taken: str, sites: frozenset[str]
    ) -> None:
        """Insert a user's or a token's row and its sites in one transaction; AccountError
        (`taken`) if the name is."""
        kind = "user" if table is users_table else "token"
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(table).values(row))
                # A name's old rows (none, unless a database was edited by hand) never add sites.
                held = account_sites_table.c
                conn.execute(
                    delete(account_sites_table).where(held.kind == kind, held.name == row["name"])
                )
                for site in sorted(sites):
                    values = {"kind": kind, "name": row["name"], "site_id": site}
                    conn.execute(insert(account_sites_table).values(values))
        except IntegrityError:
            raise AccountError(taken) from None

    # --- the sites of a user or a token --------------------------------------------------------

    def set_sites(
        self,
        kind: Kind,
        name: str,
        sites: Iterable[str] | None = None,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> frozenset[str] | None:
        """Change the sites a user's or a token's role holds on: `sites` replaces them (empty:
        every site), else `add` and `remove` change them. Returns what it holds now (None:
        every site). Its sessions and scripts see the change at their next request (the sites
        are read at each one).

        AccountError for an admin or a metrics token (no sites to hold), a bad site id, or a
        removal that would leave none: no sites means every site, so that is said outright
        (`sites=()`), never reached by removing the last one. UnknownAccount for no such name."""
        table = users_table if kind == "user" else api_tokens_table
        held = account_sites_table.c
        mine = (held.kind == kind) & (held.name == name)
        with self._engine.begin() as conn:
            role_name = conn.scalar(select(table.c.role).where(table.c.name == name))
            if role_name is None:
                raise UnknownAccount(f"no {kind} named {name!r}")
            role = Role.parse(role_name)
            now = frozenset(str(site) for site in conn.scalars(select(held.site_id).where(mine)))
            if sites is not None:
                wanted = _checked_sites(role, sites)
            else:
                added, removed = _checked_sites(role, add), frozenset(remove)
                if (added or removed) and not now:
                    raise AccountError(
                        f"the {kind} {name!r} holds every site: name the sites it should hold"
                    )
                wanted = (now | added) - removed
                if not wanted:
                    raise AccountError(
                        "that would leave no site, which means every site: name the sites it"
                        " should hold, or give every site outright"
                    )
            conn.execute(delete(account_sites_table).where(mine))
            for site in sorted(wanted):
                values = {"kind": kind, "name": name, "site_id": site}
                conn.execute(insert(account_sites_table).values(values))
        return wanted or None

    # --- API tokens ---------------------------------------------------------------------------

    def create_token(self, name: str, role: Role, *, sites: Iterable[str] = ()) -> str:
        """A new API token for scripts holding `role` on `sites` (none named: every site);
        returned once, only its digest is kept."""
        _check_name(name)
        named = _checked_sites(role, sites)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {
            "name": name,
            "role": role.label,
            "token_sha256": _digest(token),
            "created_at": self._clock(),
            "revoked": False,
        }
        self._insert_named(api_tokens_table, row, f"a token named {name!r} already exists", named)
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
        role = Role.parse(row.role)
        sites = self._sites("token", row.name, role)
        return Account(f"token:{row.name}", role, None, via="token", sites=sites)

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
            TokenInfo(
                row.name,
                Role.parse(row.role),
                row.created_at,
                row.last_used_at,
                row.revoked,
                self._sites("token", row.name, Role.parse(row.role)),
            )
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


def _checked_sites(role: Role, sites: Iterable[str]) -> frozenset[str]:
    """The sites named for an account, checked: an admin (every site) and a metrics token
    (no data) take none; a site id is 1-200 characters without surrounding spaces."""
    named = frozenset(sites)
    if named and role in (Role.ADMIN, Role.METRICS):
        raise AccountError(f"the {role.label} role holds no sites: name none")
    for site in named:
        if not site or site != site.strip() or len(site) > MAX_SITE_ID:
            raise AccountError(f"bad site {site!r}: 1-{MAX_SITE_ID} characters, no spaces around")
    return named


def _check_email(email: str) -> None:
    if len(email) > MAX_EMAIL or not re.fullmatch(EMAIL_PATTERN, email):
        raise AccountError(f"bad e-mail address {email!r}: one address, like name@example.vn")


def _check_password(password: str, name: str) -> None:
    problem = password_problem(password, name)
    if problem is not None:
        raise AccountError(problem)


def _user_info(row: Any, sites: frozenset[str] | None) -> UserInfo:
    return UserInfo(
        row.name,
        Role.parse(row.role),
        row.language,
        bool(row.disabled),
        row.created_at,
        row.last_login_at,
        sites,
        row.email,
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
