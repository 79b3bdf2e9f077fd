"""A site's policy as its gates get it (protocol/site_policy.py): version, list key, lists.

    bump_version(conn, "hq", now)           -> in the caller's transaction: the site's next version
    lists = SiteLists(store.engine)
    lists.add("hq", "allow", ["cccd:001099012345"], now)  -> how many were new (the version grows)
    current_policy(store.engine, "hq", now) -> BuiltPolicy: the manifest and every bucket's entries

The version grows by one in the same transaction as every change that alters what a gate of the
site holds: a key rotated or retired (server/store/site_keys.py), a pass revoked, a list entry
added or removed. A revocation also ends by itself, once its pass is past its end (plus
protocol.passes.CLOCK_SKEW): no command runs then, so `current_policy` compares what it builds
with what the publisher last published at the same version, and takes a new version when they
differ. A gate can then always trust that one version means one content.

The list key (32 random bytes) is made with the site's first version and never changed: a new
key would change every entry hash, and every bucket would travel again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, insert, select, update

from protocol.passes import CLOCK_SKEW
from protocol.rotating_passes import SECRET_BYTES
from protocol.site_policy import (
    LIST_KEY_BYTES,
    AntiPassback,
    PolicyKey,
    SitePolicy,
    bucket_digest,
    bucket_of,
    encode_key,
    entry_hash,
)
from server.clock import local_day_start
from server.store.presence import highest_seqs, people_inside
from server.store.tables import (
    gates_table,
    passes_table,
    site_keys_table,
    site_lists_table,
    site_policy_buckets_table,
    site_policy_table,
)

EditableList = Literal["allow", "block"]  # `revoked` is made from the pass registry
EDITABLE_LISTS: tuple[str, ...] = get_args(EditableList)
BucketKey = tuple[str, int]  # (list kind, bucket 0..255)
INSIDE = "inside"  # the list of who is inside, made from the entries (server/store/presence.py)
_PEOPLE = ("cccd", "pass")  # credential types that name a person
DEFAULT_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def bump_version(conn: Connection, site_id: str, now: datetime) -> int:
    """The site's policy version, grown by one (1 and a new list key for a site's first) in the
    caller's transaction: call it in the transaction that makes the change."""
    c = site_policy_table.c
    version = conn.execute(select(c.version).where(c.site_id == site_id)).scalar()
    if version is None:
        conn.execute(
            insert(site_policy_table).values(
                site_id=site_id,
                version=1,
                list_key=secrets.token_bytes(LIST_KEY_BYTES),
                rotation_secret=secrets.token_bytes(SECRET_BYTES),
                changed_at=now,
            )
        )
        return 1
    conn.execute(
        update(site_policy_table)
        .where(c.site_id == site_id)
        .values(version=c.version + 1, changed_at=now)
    )
    return int(version) + 1


def policy_versions(engine: Engine) -> dict[str, int]:
    """Every site's policy version: what the publisher polls (one small query)."""
    c = site_policy_table.c
    with engine.connect() as conn:
        return {str(site): int(v) for site, v in conn.execute(select(c.site_id, c.version))}


def ensure_policies(engine: Engine, now: datetime) -> list[str]:
    """Give a policy (version 1) to every site that has gates, keys or passes and none yet (a
    database from before site policies, a site whose gates came before its keys). The sites
    given one; a read alone when there are none."""
    known = set(policy_versions(engine))
    with engine.connect() as conn:
        seen = {
            str(site)
            for table in (gates_table, site_keys_table, passes_table)
            for (site,) in conn.execute(select(table.c.site_id).distinct())
        }
    missing = sorted(seen - known)
    if missing:
        with engine.begin() as conn:
            for site in missing:
                if (
                    conn.execute(
                        select(site_policy_table.c.version).where(
                            site_policy_table.c.site_id == site
                        )
                    ).first()
                    is None
                ):
                    bump_version(conn, site, now)
    return missing


class SiteLists:
    """A site's allow and block lists: subjects as protocol.site_policy.list_subject writes them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, site_id: str, kind: EditableList, subjects: Iterable[str], now: datetime) -> int:
        """Add the subjects not listed yet; the version grows once if any was new. How many."""
        _check_list(kind)
        c = site_lists_table.c
        wanted = sorted(set(subjects))
        with self._engine.begin() as conn:
            have = set(
                conn.execute(
                    select(c.subject).where(c.site_id == site_id, c.kind == kind)
                ).scalars()
            )
            new = [subject for subject in wanted if subject not in have]
            if new:
                conn.execute(
                    insert(site_lists_table),
                    [dict(site_id=site_id, kind=kind, subject=s, added_at=now) for s in new],
                )
                bump_version(conn, site_id, now)
        return len(new)

    def remove(
        self, site_id: str, kind: EditableList, subjects: Iterable[str], now: datetime
    ) -> int:
        """Remove the subjects listed; the version grows once if any was. How many."""
        _check_list(kind)
        c = site_lists_table.c
        with self._engine.begin() as conn:
            gone = conn.execute(
                delete(site_lists_table).where(
                    c.site_id == site_id, c.kind == kind, c.subject.in_(sorted(set(subjects)))
                )
            ).rowcount
            if gone:
                bump_version(conn, site_id, now)
        return int(gone)

    def entries(self, site_id: str, kind: EditableList) -> list[tuple[str, datetime]]:
        """(subject, added at), in the subjects' order."""
        _check_list(kind)
        c = site_lists_table.c
        query = (
            select(c.subject, c.added_at)
            .where(c.site_id == site_id, c.kind == kind)
            .order_by(c.subject)
        )
        with self._engine.connect() as conn:
            return [(str(s), added) for s, added in conn.execute(query)]


def _check_list(kind: str) -> None:
    if kind not in EDITABLE_LISTS:
        raise ValueError(f"list {kind!r} is not one of {', '.join(EDITABLE_LISTS)}")


@dataclass(frozen=True)
class BuiltPolicy:
    """A site's whole policy at one version: the manifest, and each non-empty bucket's entries."""

    manifest: SitePolicy
    entries: dict[BucketKey, frozenset[bytes]]
    content_digest: str  # of the keys, list key and buckets: what one version must mean

    @property
    def version(self) -> int:
        return self.manifest.version


def current_policy(
    engine: Engine, site_id: str, now: datetime, tz: ZoneInfo = DEFAULT_TZ
) -> BuiltPolicy:
    """The site's policy from the database, as of `now` (revocations past their pass's end
    left out; who is inside since local midnight in `tz`). When that differs from what was
    published at the same version, the version grows first (see the module's docstring).
    KeyError for a site with no policy."""
    built, published = _build(engine, site_id, now, tz)
    if published == (built.version, False) and _grow(engine, site_id, built.version, now):
        built, _ = _build(engine, site_id, now, tz)
    return built


def refresh_presence(
    engine: Engine, last: BuiltPolicy, now: datetime, tz: ZoneInfo = DEFAULT_TZ
) -> BuiltPolicy | None:
    """`last` with the `inside` list and presence fields as of now, under a new version; `last`
    itself when they did not change; None when the site's version moved on since `last` (build
    it whole then). Reads today's passages only, never the site's other lists: cheap enough to
    run after every stored batch."""
    site_id = last.manifest.site_id
    with engine.connect() as conn:
        row = conn.execute(
            select(site_policy_table).where(site_policy_table.c.site_id == site_id)
        ).first()
        if row is None or int(row.version) != last.version:
            return None
        presence = _presence(conn, site_id, bytes(row.list_key), row, now, tz)
    entries = {key: held for key, held in last.entries.items() if key[0] != INSIDE}
    entries.update(presence.entries)
    manifest = _manifest(last.manifest, entries, presence)
    digest = _content_digest(manifest)
    if digest == last.content_digest:
        return last
    if not _grow(engine, site_id, last.version, now):
        return None
    manifest = manifest.model_copy(update={"version": last.version + 1, "issued_at": now})
    return BuiltPolicy(manifest, dict(sorted(entries.items())), digest)


def _grow(engine: Engine, site_id: str, version: int, now: datetime) -> bool:
    """The site's version from `version` to the next; False when it was not `version` any more."""
    c = site_policy_table.c
    with engine.begin() as conn:
        grown = conn.execute(
            update(site_policy_table)
            .where(c.site_id == site_id, c.version == version)
            .values(version=c.version + 1, changed_at=now)
        ).rowcount
    return bool(grown)


@dataclass(frozen=True)
class _Presence:
    entries: dict[BucketKey, frozenset[bytes]]  # the `inside` list's buckets
    since: datetime | None
    seqs: dict[str, int]


_NO_PRESENCE = _Presence({}, None, {})


def _presence(
    conn: Connection, site_id: str, list_key: bytes, row: Any, now: datetime, tz: ZoneInfo
) -> _Presence:
    """Who is inside (the `inside` list) when the site uses anti-passback or a capacity."""
    if (row.anti_passback or "off") == "off" and row.capacity is None:
        return _NO_PRESENCE
    since = local_day_start(now, tz)
    # The gates' highest seqs first, then the passages: an entry stored in between is then in
    # the list but not in its gate's seq, and the gate lays its own copy over it (the same
    # passage twice: harmless); the other order could name a seq whose passage the list lacks.
    seqs = highest_seqs(conn, since, site_id)
    grouped: dict[BucketKey, set[bytes]] = {}
    for passage in people_inside(conn, since, site_id):
        if passage.credential_type not in _PEOPLE:
            continue  # a code that names nobody has no presence
        entry = entry_hash(list_key, f"{passage.credential_type}:{passage.person}")
        grouped.setdefault((INSIDE, bucket_of(entry)), set()).add(entry)
    return _Presence({key: frozenset(held) for key, held in grouped.items()}, since, seqs)


def _manifest(
    base: SitePolicy, entries: dict[BucketKey, frozenset[bytes]], presence: _Presence
) -> SitePolicy:
    digests: dict[str, dict[str, str]] = {}
    for (kind, bucket), held in sorted(entries.items()):
        digests.setdefault(kind, {})[f"{bucket:02x}"] = bucket_digest(held)
    return base.model_copy(
        update={
            "buckets": digests,
            "presence_seq": presence.seqs,
            "presence_since": presence.since,
        }
    )


def _content_digest(manifest: SitePolicy) -> str:
    """What one version must mean: the manifest but its version and time."""
    content = manifest.model_copy(
        update={"version": 1, "issued_at": datetime(1970, 1, 1, tzinfo=UTC)}
    )
    return hashlib.sha256(content.to_json()).hexdigest()


def _build(
    engine: Engine, site_id: str, now: datetime, tz: ZoneInfo
) -> tuple[BuiltPolicy, tuple[int, bool]]:
    """The policy, and (the version published last, whether its content is this one's)."""
    p, k, lists, passes = (
        site_policy_table.c,
        site_keys_table.c,
        site_lists_table.c,
        passes_table.c,
    )
    with engine.connect() as conn:
        row = conn.execute(select(site_policy_table).where(p.site_id == site_id)).first()
        if row is None:
            raise KeyError(site_id)
        if row.rotation_secret is None:  # a site from before rotating passes
            _give_rotation_secret(engine, site_id)
            row = conn.execute(select(site_policy_table).where(p.site_id == site_id)).first()
            assert row is not None
        keys = conn.execute(
            select(k.key_id, k.public_key)
            .where(k.site_id == site_id, k.state != "retired")
            .order_by(k.key_id)
        ).all()
        listed = conn.execute(
            select(lists.kind, lists.subject).where(lists.site_id == site_id)
        ).all()
        revoked = conn.execute(
            select(passes.pass_id, passes.valid_until).where(
                passes.site_id == site_id, passes.revoked_at.is_not(None)
            )
        ).all()
        list_key = bytes(row.list_key)
        presence = _presence(conn, site_id, list_key, row, now, tz)
    subjects: list[tuple[str, str]] = [(str(kind), str(subject)) for kind, subject in listed]
    subjects += [
        ("revoked", "pass:" + str(pass_id))
        for pass_id, until in revoked
        if until.astimezone(UTC) + CLOCK_SKEW > now
    ]
    grouped: dict[BucketKey, set[bytes]] = {}
    for kind, subject in subjects:
        entry = entry_hash(list_key, subject)
        grouped.setdefault((kind, bucket_of(entry)), set()).add(entry)
    entries = {key: frozenset(held) for key, held in grouped.items()}
    entries.update(presence.entries)
    entries = dict(sorted(entries.items()))
    policy_keys = [
        PolicyKey(key_id=key_id, public_key=encode_key(bytes(raw))) for key_id, raw in keys
    ]
    base = SitePolicy(
        site_id=site_id,
        version=int(row.version),
        issued_at=row.changed_at,
        keys=policy_keys,
        list_key=encode_key(list_key),
        rotation_secret=encode_key(bytes(row.rotation_secret)),
        anti_passback=row.anti_passback or "off",
        capacity=row.capacity,
    )
    manifest = _manifest(base, entries, presence)
    digest = _content_digest(manifest)
    built = BuiltPolicy(manifest, entries, digest)
    published = row.published_version
    same = published is not None and row.published_digest == digest
    return built, (-1 if published is None else int(published), same)


def _give_rotation_secret(engine: Engine, site_id: str) -> None:
    c = site_policy_table.c
    with engine.begin() as conn:
        conn.execute(
            update(site_policy_table)
            .where(c.site_id == site_id, c.rotation_secret.is_(None))
            .values(rotation_secret=secrets.token_bytes(SECRET_BYTES))
        )


def set_presence_rules(
    engine: Engine,
    site_id: str,
    now: datetime,
    *,
    anti_passback: AntiPassback | None = None,
    capacity: int | Literal["unchanged"] | None = "unchanged",
) -> tuple[str, int | None]:
    """Change a site's anti-passback and capacity (a new version, in the same transaction);
    (anti_passback, capacity) as they are now. ValueError for a capacity below 1."""
    if isinstance(capacity, int) and capacity < 1:
        raise ValueError("a capacity is at least 1 person")
    c = site_policy_table.c
    with engine.begin() as conn:
        bump_version(conn, site_id, now)
        changes: dict[str, Any] = {}
        if anti_passback is not None:
            changes["anti_passback"] = anti_passback
        if capacity != "unchanged":
            changes["capacity"] = capacity
        if changes:
            conn.execute(update(site_policy_table).where(c.site_id == site_id).values(**changes))
        row = conn.execute(select(c.anti_passback, c.capacity).where(c.site_id == site_id)).one()
    return str(row.anti_passback), row.capacity


def kept_rotation_secret(engine: Engine, site_id: str) -> bytes | None:
    """The site's rotation secret if it has one, None if not (nothing made: a read only)."""
    c = site_policy_table.c
    with engine.connect() as conn:
        secret = conn.scalar(select(c.rotation_secret).where(c.site_id == site_id))
    return None if secret is None else bytes(secret)


def rotation_secret(engine: Engine, site_id: str, now: datetime) -> bytes:
    """The site's rotation secret (a policy of its own made first, when it has none)."""
    c = site_policy_table.c
    with engine.begin() as conn:
        if conn.execute(select(c.version).where(c.site_id == site_id)).first() is None:
            bump_version(conn, site_id, now)
    _give_rotation_secret(engine, site_id)
    with engine.connect() as conn:
        secret = conn.execute(select(c.rotation_secret).where(c.site_id == site_id)).scalar_one()
    return bytes(secret)


# --- what the publisher last published -----------------------------------------------------------


def published_buckets(engine: Engine, site_id: str) -> dict[BucketKey, tuple[str, int]]:
    """The site's buckets last published: (kind, bucket) -> (digest, version)."""
    c = site_policy_buckets_table.c
    query = select(c.kind, c.bucket, c.digest, c.version).where(c.site_id == site_id)
    with engine.connect() as conn:
        return {(str(kd), int(b)): (str(d), int(v)) for kd, b, d, v in conn.execute(query)}


def record_published(
    engine: Engine, built: BuiltPolicy, buckets: dict[BucketKey, tuple[str, int]]
) -> None:
    """The publisher published `built` (its manifest last), its buckets now `buckets`."""
    c = site_policy_buckets_table.c
    site_id = built.manifest.site_id
    with engine.begin() as conn:
        conn.execute(delete(site_policy_buckets_table).where(c.site_id == site_id))
        if buckets:
            conn.execute(
                insert(site_policy_buckets_table),
                [
                    dict(site_id=site_id, kind=kind, bucket=bucket, digest=digest, version=v)
                    for (kind, bucket), (digest, v) in sorted(buckets.items())
                ],
            )
        conn.execute(
            update(site_policy_table)
            .where(site_policy_table.c.site_id == site_id)
            .values(published_version=built.version, published_digest=built.content_digest)
        )
