"""The site policy a gate decides with, as one immutable snapshot (`HeldPolicy`).

The MQTT thread builds a new snapshot for every message it applies and swaps it in with one
assignment; the frame thread reads whichever snapshot is current, with no lock: nothing in a
snapshot ever changes after it is made.

A list is held as 256 frozensets, one per bucket (the first byte of the entry hash), so applying
a bucket replaces one set in a tuple of 256 instead of rebuilding a set of the whole list. A
lookup is one HMAC (`entry_hash`) and one set membership: about two microseconds at 100,000
entries (bench/site_lists_lookup.py).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.site_policy import BUCKETS, LIST_KINDS, ListBucket, SitePolicy, entry_hash

_NO_ENTRIES: frozenset[bytes] = frozenset()
_EMPTY_LIST: tuple[frozenset[bytes], ...] = (_NO_ENTRIES,) * BUCKETS


def public_keys(manifest: SitePolicy) -> dict[int, Ed25519PublicKey]:
    """The manifest's keys by key id; ValueError for a key that is no Ed25519 key or an id
    given twice (the whole manifest is then refused: keys are not half applied)."""
    keys: dict[int, Ed25519PublicKey] = {}
    for key in manifest.keys:
        if key.key_id in keys:
            raise ValueError(f"key id {key.key_id} is given twice")
        keys[key.key_id] = Ed25519PublicKey.from_public_bytes(key.raw())
    return keys


@dataclass(frozen=True)
class HeldPolicy:
    """The manifest the gate holds (None: none yet), its keys, and the buckets of its lists.

    `buckets` holds every bucket received and not dropped, by (kind, bucket): a bucket may come
    before the manifest that names it (retained messages come in no set order), and is kept;
    a manifest drops the buckets it does not name."""

    manifest: SitePolicy | None = None
    keys: Mapping[int, Ed25519PublicKey] = field(default_factory=lambda: MappingProxyType({}))
    buckets: Mapping[tuple[str, int], ListBucket] = field(
        default_factory=lambda: MappingProxyType({})
    )
    _sets: Mapping[str, tuple[frozenset[bytes], ...]] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(LIST_KINDS, _EMPTY_LIST))
    )
    _list_key: bytes | None = None

    @classmethod
    def of(
        cls,
        manifest: SitePolicy | None,
        buckets: Mapping[tuple[str, int], ListBucket],
        keys: Mapping[int, Ed25519PublicKey] | None = None,
    ) -> HeldPolicy:
        """A snapshot from its parts (`keys` from `public_keys(manifest)` when not given)."""
        if keys is None:
            keys = public_keys(manifest) if manifest is not None else {}
        sets = {kind: list(_EMPTY_LIST) for kind in LIST_KINDS}
        for (kind, bucket), held in buckets.items():
            sets[kind][bucket] = held.entries
        return cls(
            manifest=manifest,
            keys=MappingProxyType(dict(keys)),
            buckets=MappingProxyType(dict(buckets)),
            _sets=MappingProxyType({kind: tuple(each) for kind, each in sets.items()}),
            _list_key=manifest.list_key_bytes() if manifest is not None else None,
        )

    def with_bucket(self, bucket: ListBucket) -> HeldPolicy:
        """This snapshot with `bucket` held (replacing the one of its kind and number)."""
        buckets = dict(self.buckets)
        buckets[bucket.kind, bucket.bucket] = bucket
        return self._with_buckets(buckets, bucket.kind, bucket.bucket, bucket.entries)

    def without_bucket(self, kind: str, number: int) -> HeldPolicy:
        buckets = dict(self.buckets)
        buckets.pop((kind, number), None)
        return self._with_buckets(buckets, kind, number, _NO_ENTRIES)

    def _with_buckets(
        self,
        buckets: dict[tuple[str, int], ListBucket],
        kind: str,
        number: int,
        entries: frozenset[bytes],
    ) -> HeldPolicy:
        sets = dict(self._sets)
        changed = list(sets[kind])
        changed[number] = entries
        sets[kind] = tuple(changed)
        return HeldPolicy(
            manifest=self.manifest,
            keys=self.keys,
            buckets=MappingProxyType(buckets),
            _sets=MappingProxyType(sets),
            _list_key=self._list_key,
        )

    @property
    def version(self) -> int | None:
        """The manifest's version (what the gate's status reports), None when none is held."""
        return self.manifest.version if self.manifest is not None else None

    @property
    def key_ids(self) -> list[int]:
        """The ids of the site keys held (passes signed by others are refused)."""
        return sorted(self.keys)

    def list_versions(self) -> dict[str, int]:
        """For each list held, the policy version it last changed in: its newest bucket's."""
        newest: dict[str, int] = {}
        for (kind, _number), bucket in self.buckets.items():
            newest[kind] = max(newest.get(kind, 0), bucket.version)
        return dict(sorted(newest.items()))

    def entry(self, subject: str) -> bytes | None:
        """`subject` ("cccd:..." or "pass:...") as the lists hold it; None without a list key."""
        if self._list_key is None:
            return None
        return entry_hash(self._list_key, subject)

    def holds(self, kind: str, entry: bytes | None) -> bool:
        """Whether list `kind` holds `entry` (from `entry`): one set membership."""
        return entry is not None and entry in self._sets[kind][entry[0]]

    def listed(self, kind: str, subject: str) -> bool:
        return self.holds(kind, self.entry(subject))

    def count(self, kind: str) -> int:
        """Entries held in list `kind`."""
        return sum(len(entries) for entries in self._sets[kind])

    @property
    def rotation_secret(self) -> bytes | None:
        """The site's secret for rotating passes (None: the manifest has none)."""
        if self.manifest is None or self.manifest.rotation_secret is None:
            return None
        return base64.b64decode(self.manifest.rotation_secret)

    def inside_lookup(self) -> Callable[[bytes], bool]:
        """Whether the server's `inside` list holds an entry (for device/verdict/presence.py)."""
        sets = self._sets["inside"]

        def holds(entry: bytes) -> bool:
            return entry in sets[entry[0]]

        return holds

    @property
    def trusts_anything(self) -> bool:
        """Whether access mode can grant anyone: a site key to verify passes with, or an allow
        list with someone on it. False: every code is refused."""
        return bool(self.keys) or (self._list_key is not None and any(self._sets["allow"]))


EMPTY_POLICY = HeldPolicy()
