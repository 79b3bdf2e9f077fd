"""A site's policy made the way the server makes it (protocol/site_policy.py), for tests, benches
and the demo: a real Ed25519 site key, a list key, lists of CCCD numbers and pass ids, the
retained manifest and buckets as (topic, payload) pairs, and passes signed with the site key.

    site = SampleSite("Bến xe Mỹ Đình")
    site.allow("079193012345"); site.revoke(pass_id_hex)
    for topic, payload in site.messages(): client.publish(topic, payload, qos=1, retain=True)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from device.site_policy.held import HeldPolicy
from protocol.passes import PassBody, PassFlags, new_pass_id, sign_pass
from protocol.rotating_passes import pass_secret, rotating_code
from protocol.site_policy import (
    LIST_KINDS,
    ListBucket,
    PolicyKey,
    SitePolicy,
    bucket_of,
    bucket_topic,
    encode_key,
    entry_hash,
    list_subject,
    manifest_topic,
)


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class SampleSite:
    """One site's keys and lists; `version` grows with every change, as the server's does."""

    site_id: str
    key_id: int = 1
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    list_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    version: int = 1
    lists: dict[str, set[str]] = field(default_factory=lambda: {kind: set() for kind in LIST_KINDS})
    with_key: bool = True  # False: a manifest with no key (a site that has none yet)
    rotation_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    anti_passback: str = "off"
    capacity: int | None = None
    presence_seq: dict[str, int] = field(default_factory=dict)
    # The version each bucket last changed in, as the server keeps it.
    _bucket_versions: dict[tuple[str, int], int] = field(default_factory=dict)

    # -- lists ------------------------------------------------------------------------------

    def add(self, kind: str, *ids: str) -> set[tuple[str, int]]:
        """Put CCCD numbers or pass ids on list `kind`; a new version. The buckets touched."""
        return self._change(kind, ids, add=True)

    def remove(self, kind: str, *ids: str) -> set[tuple[str, int]]:
        return self._change(kind, ids, add=False)

    def allow(self, *ids: str) -> set[tuple[str, int]]:
        return self.add("allow", *ids)

    def block(self, *ids: str) -> set[tuple[str, int]]:
        return self.add("block", *ids)

    def revoke(self, *pass_ids: str) -> set[tuple[str, int]]:
        return self.add("revoked", *pass_ids)

    def _change(self, kind: str, ids: Iterable[str], *, add: bool) -> set[tuple[str, int]]:
        self.version += 1
        touched = set()
        for text in ids:
            subject = list_subject(text)
            (self.lists[kind].add if add else self.lists[kind].discard)(subject)
            touched.add((kind, bucket_of(entry_hash(self.list_key, subject))))
        for where in touched:
            self._bucket_versions[where] = self.version
        return touched

    # -- what the server publishes -------------------------------------------------------------

    def bucket(self, kind: str, number: int) -> ListBucket:
        entries = frozenset(
            entry
            for entry in (entry_hash(self.list_key, subject) for subject in self.lists[kind])
            if bucket_of(entry) == number
        )
        version = self._bucket_versions.get((kind, number), self.version)
        return ListBucket(kind, number, version, entries)

    def buckets(self) -> list[ListBucket]:
        numbers = {
            (kind, bucket_of(entry_hash(self.list_key, subject)))
            for kind in LIST_KINDS
            for subject in self.lists[kind]
        }
        return [self.bucket(kind, number) for kind, number in sorted(numbers)]

    def manifest(self) -> SitePolicy:
        buckets: dict[str, dict[str, str]] = {}
        for held in self.buckets():
            buckets.setdefault(held.kind, {})[f"{held.bucket:02x}"] = held.digest()
        keys = [PolicyKey(key_id=self.key_id, public_key=encode_key(raw_public_key(self.key)))]
        return SitePolicy.model_validate(
            {
                "site_id": self.site_id,
                "version": self.version,
                "issued_at": datetime.now(UTC),
                "keys": keys if self.with_key else [],
                "list_key": encode_key(self.list_key),
                "buckets": buckets,
                "rotation_secret": encode_key(self.rotation_secret),
                "anti_passback": self.anti_passback,
                "capacity": self.capacity,
                "presence_seq": self.presence_seq,
            }
        )

    def messages(self, only: Iterable[tuple[str, int]] | None = None) -> list[tuple[str, bytes]]:
        """(topic, payload) to publish retained: the buckets (all, or `only` these: an emptied
        one as an empty payload), then the manifest, in the server's order."""
        wanted = (
            [self.bucket(kind, number) for kind, number in sorted(only)]
            if only is not None
            else self.buckets()
        )
        sent = [
            (
                bucket_topic(self.site_id, held.kind, held.bucket),
                held.to_bytes() if held.entries else b"",
            )
            for held in wanted
        ]
        return [*sent, (manifest_topic(self.site_id), self.manifest().to_json())]

    def held(self) -> HeldPolicy:
        """The snapshot a gate holds once it has every message."""
        buckets = {(held.kind, held.bucket): held for held in self.buckets()}
        return HeldPolicy.of(self.manifest(), buckets)

    # -- passes --------------------------------------------------------------------------------

    def issue(
        self,
        *,
        now: datetime | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        issued: bool = True,
        phone: bool = False,
        pass_id: bytes | None = None,
        key: Ed25519PrivateKey | None = None,
        key_id: int | None = None,
    ) -> bytes:
        """A pass's bytes, signed with the site key (or `key`), valid an hour around `now`."""
        moment = now or datetime.now(UTC)
        body = PassBody(
            key_id=self.key_id if key_id is None else key_id,
            pass_id=pass_id or new_pass_id(),
            valid_from=valid_from or moment - timedelta(hours=1),
            valid_until=valid_until or moment + timedelta(hours=1),
            flags=(PassFlags.ISSUED if issued else PassFlags(0))
            | (PassFlags.PHONE if phone else PassFlags(0)),
        )
        return sign_pass(body, key or self.key).to_bytes()

    def on_phone(self, code: bytes, moment: datetime) -> bytes:
        """What the holder's page shows at `moment` for the pass `code` (its rotating form)."""
        return rotating_code(code, pass_secret(self.rotation_secret, code[4:12]), moment)


def pass_id_of(code: bytes) -> str:
    """The 16-hex pass id of a pass's bytes (bytes 4..11)."""
    return code[4:12].hex()
