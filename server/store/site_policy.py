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
from typing import Literal, get_args

from sqlalchemy import Connection, Engine, delete, insert, select, update

from protocol.passes import CLOCK_SKEW
from protocol.site_policy import (
    LIST_KEY_BYTES,
    PolicyKey,
    SitePolicy,
    bucket_digest,
    bucket_of,
    encode_key,
    entry_hash,
)
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


def current_policy(engine: Engine, site_id: str, now: datetime) -> BuiltPolicy:
    """The site's policy from the database, as of `now` (revocations past their pass's end
    left out). When that differs from what was published at the same version, the version grows
    first (see the module's docstring). KeyError for a site with no policy."""
    built, published = _build(engine, site_id, now)
    if published == (built.version, False):
        with engine.begin() as conn:
            c = site_policy_table.c
            grown = conn.execute(
                update(site_policy_table)
                .where(c.site_id == site_id, c.version == built.version)
                .values(version=c.version + 1, changed_at=now)
            ).rowcount
        if grown:
            built, _ = _build(engine, site_id, now)
    return built


def _build(engine: Engine, site_id: str, now: datetime) -> tuple[BuiltPolicy, tuple[int, bool]]:
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
    entries = {key: frozenset(held) for key, held in sorted(grouped.items())}
    digests: dict[str, dict[str, str]] = {}
    for (kind, bucket), held in entries.items():
        digests.setdefault(kind, {})[f"{bucket:02x}"] = bucket_digest(held)
    policy_keys = [
        PolicyKey(key_id=key_id, public_key=encode_key(bytes(raw))) for key_id, raw in keys
    ]
    manifest = SitePolicy(
        site_id=site_id,
        version=int(row.version),
        issued_at=row.changed_at,
        keys=policy_keys,
        list_key=encode_key(list_key),
        buckets=digests,
    )
    content = manifest.model_copy(
        update={"version": 1, "issued_at": datetime(1970, 1, 1, tzinfo=UTC)}
    )
    digest = hashlib.sha256(content.to_json()).hexdigest()
    built = BuiltPolicy(manifest, entries, digest)
    published = row.published_version
    same = published is not None and row.published_digest == digest
    return built, (-1 if published is None else int(published), same)


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
