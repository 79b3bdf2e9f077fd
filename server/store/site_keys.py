"""A site's pass-signing keys and the passes it issued (issue 15, step 1).

    keys = SiteKeys(store.engine)
    keys.rotate("hq", now)              -> the new active key (the old active: verify-only)
    keys.public_keys("hq")              -> {key id: Ed25519PublicKey}, what verifies its passes
    keys.retire(key_id, now)            -> no longer verifies (never a site's only active key)
    passes = PassRegistry(store.engine)
    passes.add(PassRecord(...)); passes.revoke(pass_id, now)

Each change a site's gates must learn of (a key rotated or retired, a pass revoked) grows the
site's policy version in its own transaction (server/store/site_policy.py: `bump_version`), so
the collector's publisher sends it on.

A key's states: `active` (signs new passes; one per site), `verify-only` (rotated out: passes it
signed still verify), `retired` (verifies nothing). Key ids are 1..65535, unique across the
installation (a pass carries only the id), given in order and never reused.

The private key is kept raw in the database (32 bytes, an Ed25519 seed): the database file is
0600 and holds every other secret a site has. It is never printed or logged; `SiteKey` does not
carry it, only `signing_key()` reads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from protocol.passes import PassBody, PassFlags, SignedPass, new_pass_id, sign_pass
from server.store.site_policy import bump_version
from server.store.tables import passes_table, site_keys_table

KeyState = Literal["active", "verify-only", "retired"]
KEY_STATES: tuple[str, ...] = get_args(KeyState)
MAX_KEY_ID = 0xFFFF


class SiteKeyError(ValueError):
    """A change refused; `reason` a word for programs (unknown, only_active, full, busy)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SiteKey:
    key_id: int
    site_id: str
    state: str
    public_key: bytes
    created_at: datetime
    retired_at: datetime | None

    def fingerprint(self) -> str:
        """SHA-256 of the raw public key, its first 16 hex digits: what `key list` shows."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)


_KEY_COLUMNS = [c for c in site_keys_table.c if c.name in SiteKey.__dataclass_fields__]


class SiteKeys:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def rotate(self, site_id: str, now: datetime) -> SiteKey:
        """A new active key for the site; its active one (if any) becomes verify-only."""
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        c = site_keys_table.c
        try:
            with self._engine.begin() as conn:
                newest = conn.execute(select(func.max(c.key_id))).scalar() or 0
                if newest >= MAX_KEY_ID:
                    raise SiteKeyError("full", f"every key id up to {MAX_KEY_ID} is used")
                conn.execute(
                    update(site_keys_table)
                    .where(c.site_id == site_id, c.state == "active")
                    .values(state="verify-only")
                )
                conn.execute(
                    insert(site_keys_table).values(
                        key_id=newest + 1,
                        site_id=site_id,
                        state="active",
                        public_key=public,
                        private_key=seed,
                        created_at=now,
                    )
                )
                bump_version(conn, site_id, now)
        except IntegrityError:  # another rotation took the id meanwhile
            raise SiteKeyError("busy", "another key was made meanwhile: run it again") from None
        key = self.get(newest + 1)
        assert key is not None
        return key

    def get(self, key_id: int) -> SiteKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_KEY_COLUMNS).where(site_keys_table.c.key_id == key_id)
            ).first()
        return None if row is None else SiteKey(**dict(row._mapping))

    def all(self, site_id: str | None = None) -> list[SiteKey]:
        c = site_keys_table.c
        query = select(*_KEY_COLUMNS).order_by(c.site_id, c.key_id)
        if site_id is not None:
            query = query.where(c.site_id == site_id)
        with self._engine.connect() as conn:
            return [SiteKey(**dict(row._mapping)) for row in conn.execute(query)]

    def active(self, site_id: str) -> SiteKey | None:
        return next((k for k in self.all(site_id) if k.state == "active"), None)

    def signing_key(self, key_id: int) -> Ed25519PrivateKey:
        with self._engine.connect() as conn:
            seed = conn.execute(
                select(site_keys_table.c.private_key).where(site_keys_table.c.key_id == key_id)
            ).scalar_one()
        return Ed25519PrivateKey.from_private_bytes(bytes(seed))

    def public_keys(self, site_id: str) -> dict[int, Ed25519PublicKey]:
        """The keys a site's passes verify under: active and verify-only, not retired."""
        return {k.key_id: k.verifier() for k in self.all(site_id) if k.state != "retired"}

    def retire(self, key_id: int, now: datetime) -> SiteKey:
        """The key verifies nothing from now on. SiteKeyError `unknown`, or `only_active` for a
        site's only active key (rotate first: a site always has a key that signs)."""
        key = self.get(key_id)
        if key is None:
            raise SiteKeyError("unknown", f"no key {key_id} (gatescan key list)")
        if key.state == "active":
            raise SiteKeyError(
                "only_active",
                f"key {key_id} is site {key.site_id}'s only active key: run `gatescan key rotate"
                f" --site {key.site_id}` first, then retire it",
            )
        if key.state != "retired":
            with self._engine.begin() as conn:
                conn.execute(
                    update(site_keys_table)
                    .where(site_keys_table.c.key_id == key_id)
                    .values(state="retired", retired_at=now)
                )
                bump_version(conn, key.site_id, now)
        retired = self.get(key_id)
        assert retired is not None
        return retired


@dataclass(frozen=True)
class PassRecord:
    pass_id: str  # 16 hex digits
    holder_name: str
    site_id: str
    key_id: int
    valid_from: datetime
    valid_until: datetime
    issued: bool
    issued_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


_PASS_COLUMNS = [c for c in passes_table.c if c.name in PassRecord.__dataclass_fields__]


class PassRegistry:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, record: PassRecord) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(passes_table).values(**record.__dict__))

    def get(self, pass_id: str) -> PassRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_PASS_COLUMNS).where(passes_table.c.pass_id == pass_id)
            ).first()
        return None if row is None else PassRecord(**dict(row._mapping))

    def all(self, site_id: str | None = None) -> list[PassRecord]:
        c = passes_table.c
        query = select(*_PASS_COLUMNS).order_by(c.site_id, c.issued_at, c.pass_id)
        if site_id is not None:
            query = query.where(c.site_id == site_id)
        with self._engine.connect() as conn:
            return [PassRecord(**dict(row._mapping)) for row in conn.execute(query)]

    def revoke(self, pass_id: str, now: datetime) -> PassRecord | None:
        """Mark it revoked (the first time counts: only then does the site's policy version
        grow); None for an unknown pass id."""
        c = passes_table.c
        with self._engine.begin() as conn:
            revoked = conn.execute(
                update(passes_table)
                .where(c.pass_id == pass_id, c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            if revoked:
                site_id = conn.execute(select(c.site_id).where(c.pass_id == pass_id)).scalar_one()
                bump_version(conn, str(site_id), now)
        return self.get(pass_id)


def issue_pass(
    engine: Engine,
    site_id: str,
    holder_name: str,
    valid_from: datetime,
    valid_until: datetime,
    now: datetime,
    flags: PassFlags = PassFlags.ISSUED,
) -> SignedPass:
    """A new pass signed with the site's active key, kept in the registry. SiteKeyError
    (`unknown`) when the site has no active key; ValueError for a window PassBody refuses."""
    keys = SiteKeys(engine)
    key = keys.active(site_id)
    if key is None:
        raise SiteKeyError("unknown", f"site {site_id!r} has no signing key")
    body = PassBody(key.key_id, new_pass_id(), valid_from, valid_until, flags)
    signed = sign_pass(body, keys.signing_key(key.key_id))
    record = PassRecord(
        body.pass_id_text(),
        holder_name,
        site_id,
        key.key_id,
        valid_from,
        valid_until,
        body.issued,
        now,
    )
    PassRegistry(engine).add(record)
    return signed
