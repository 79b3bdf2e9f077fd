"""What a site's gates need to decide on their own: its pass keys and its lists (issue 15, step 2).

The server publishes a site's policy over MQTT as retained messages, so a gate that connects (or
reconnects after a week offline) gets the newest of each at once, and keeps it in its data dir so
that it decides with no network at all:

    gatescan/v1/sites/{site}/policy/manifest            JSON `SitePolicy`: the version, the public
                                                        keys, the list key, a digest per bucket
    gatescan/v1/sites/{site}/policy/list/{kind}/{xx}    binary: one bucket of one list

`{site}` is `site_topic_level(site_id)`: the site id with every character but A-Z a-z 0-9 _ . -
percent-encoded (a site id is free text; a topic level cannot hold `/`, `+` or `#`).

Lists (`kind`): `allow` (who access mode lets in besides a valid issued pass: CCCD numbers, pass
ids), `block` (refused in every mode), `revoked` (pass ids the site revoked, until they expire),
`inside` (who is inside the site now, site-wide: people whose last passage today went through an
`in` gate; what anti-passback and the capacity decide with).
An entry is never the plain ID but `entry_hash(list_key, subject)`: the first 16 bytes of
HMAC-SHA256 under the site's list key, of "cccd:<12 digits>" or "pass:<16 hex digits>". What that
protects, honestly: a list copied without its key (a log, a backup of one file, a message seen on
the broker by someone holding only that message) names nobody. A gate holds the key too, so with
the whole SD card the CCCD hashes can be reversed by trying numbers (12 digits, the first six
nearly fixed by province, century, gender and year: minutes of work); pass ids are 64 random
bits and cannot be tried.

Why buckets: the broker refuses packets over 64 KiB (docs/protocol.md) and a list may hold a
hundred thousand people. Each list is cut into 256 buckets by the first byte of the entry hash;
a bucket is its own retained message (about 6 KiB each at 100,000 entries; at most
MAX_BUCKET_ENTRIES, so a list holds up to a million). A change re-sends only the buckets it
touched, then the manifest: deltas by construction, and a gate that missed changes while
offline gets whole buckets, never a chain of deltas to replay. An emptied bucket is cleared (an
empty retained message) and leaves the manifest; the manifest is the authority on which buckets
exist, so a gate drops a bucket it holds that the manifest no longer names.

Bucket payload: BUCKET_MAGIC, then big-endian u64 version (the site's policy version when the
bucket last changed), u8 list index (LIST_KINDS), u8 bucket, then the entries: 16 bytes each,
sorted, no repeats.

Trust: only the server's broker user may publish under gatescan/v1/sites/ (the ACL); a gate's
role may read its own site's policy only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from protocol.topics import DEVICE_ID_PATTERN

SITES_PREFIX = "gatescan/v1/sites"
LIST_KINDS: tuple[str, ...] = ("allow", "block", "revoked", "inside")
ListKind = Literal["allow", "block", "revoked", "inside"]
AntiPassback = Literal["off", "soft", "hard"]
BUCKETS = 256
ENTRY_BYTES = 16
LIST_KEY_BYTES = 32
BUCKET_MAGIC = b"GSL1"
_BUCKET_HEAD = struct.Struct(">4sQBB")
# The broker's packet limit (64 KiB) less the topic, the fixed header and room to spare.
MAX_BUCKET_BYTES = 60 * 1024
MAX_BUCKET_ENTRIES = (MAX_BUCKET_BYTES - _BUCKET_HEAD.size) // ENTRY_BYTES
MAX_KEYS = 64
_SAFE_LEVEL = re.compile(r"[A-Za-z0-9_.-]")
_CCCD = re.compile(r"^[0-9]{12}$")
_PASS_ID = re.compile(r"^[0-9a-f]{16}$")


class PolicyFormatError(ValueError):
    """A policy message that cannot be used; the message says why (never the entries)."""


# --- topics ---------------------------------------------------------------------------------------


def site_topic_level(site_id: str) -> str:
    """The site id as one topic level: A-Z a-z 0-9 _ . - kept, everything else %XX (UTF-8)."""
    if not site_id:
        raise ValueError("a gate without a site id has no site policy")
    return "".join(
        char if _SAFE_LEVEL.fullmatch(char) else "".join(f"%{b:02X}" for b in char.encode())
        for char in site_id
    )


def policy_subscription(site_id: str) -> str:
    """What a gate of the site subscribes to (and its broker role may read)."""
    return f"{SITES_PREFIX}/{site_topic_level(site_id)}/policy/#"


def manifest_topic(site_id: str) -> str:
    return f"{SITES_PREFIX}/{site_topic_level(site_id)}/policy/manifest"


def bucket_topic(site_id: str, kind: str, bucket: int) -> str:
    _check_kind(kind)
    if not 0 <= bucket < BUCKETS:
        raise ValueError(f"bucket {bucket} is not 0..{BUCKETS - 1}")
    return f"{SITES_PREFIX}/{site_topic_level(site_id)}/policy/list/{kind}/{bucket:02x}"


@dataclass(frozen=True)
class PolicyTopic:
    """A parsed policy topic: the manifest (`kind` None), or one bucket of one list."""

    site_level: str
    kind: str | None = None
    bucket: int | None = None


def parse_policy_topic(topic: str) -> PolicyTopic | None:
    """None when `topic` is not a policy topic of this version."""
    head = SITES_PREFIX + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) == 3 and parts[1:] == ["policy", "manifest"]:
        return PolicyTopic(parts[0])
    is_list = len(parts) == 5 and parts[1:3] == ["policy", "list"] and parts[3] in LIST_KINDS
    if is_list and re.fullmatch(r"[0-9a-f]{2}", parts[4]):
        return PolicyTopic(parts[0], parts[3], int(parts[4], 16))
    return None


# --- entries --------------------------------------------------------------------------------------


def list_subject(text: str) -> str:
    """What a list names, from what a person typed: "cccd:<12 digits>" for a CCCD number,
    "pass:<16 hex>" for a pass id. ValueError (saying which forms) for anything else."""
    value = text.strip().lower()
    if _CCCD.match(value):
        return "cccd:" + value
    if _PASS_ID.match(value):
        return "pass:" + value
    raise ValueError("a list entry is a 12-digit CCCD number or a 16-hex-digit pass id")


def entry_hash(list_key: bytes, subject: str) -> bytes:
    """A list entry as gates hold it: HMAC-SHA256(list key, subject), its first 16 bytes."""
    return hmac.digest(list_key, subject.encode("ascii"), "sha256")[:ENTRY_BYTES]


def bucket_of(entry: bytes) -> int:
    return entry[0]


def bucket_digest(entries: Iterable[bytes]) -> str:
    """What the manifest says a bucket holds: SHA-256 of its sorted entries, 16 hex digits."""
    return hashlib.sha256(b"".join(sorted(entries))).hexdigest()[:16]


@dataclass(frozen=True)
class ListBucket:
    kind: str
    bucket: int
    version: int
    entries: frozenset[bytes]

    def to_bytes(self) -> bytes:
        if len(self.entries) > MAX_BUCKET_ENTRIES:
            raise ValueError(
                f"{self.kind} bucket {self.bucket:02x} holds {len(self.entries)} entries, "
                f"over {MAX_BUCKET_ENTRIES}: the list is over what the broker carries"
            )
        head = _BUCKET_HEAD.pack(
            BUCKET_MAGIC, self.version, LIST_KINDS.index(self.kind), self.bucket
        )
        return head + b"".join(sorted(self.entries))

    def digest(self) -> str:
        return bucket_digest(self.entries)


def decode_bucket(payload: bytes) -> ListBucket:
    if len(payload) < _BUCKET_HEAD.size:
        raise PolicyFormatError(f"a list bucket is at least {_BUCKET_HEAD.size} bytes")
    magic, version, kind_index, bucket = _BUCKET_HEAD.unpack_from(payload)
    if magic != BUCKET_MAGIC:
        raise PolicyFormatError("not a gatescan list bucket (magic)")
    if kind_index >= len(LIST_KINDS):
        raise PolicyFormatError(f"unknown list index {kind_index}")
    body = payload[_BUCKET_HEAD.size :]
    if len(body) % ENTRY_BYTES:
        raise PolicyFormatError(f"entries are {ENTRY_BYTES} bytes; {len(body)} bytes left over")
    entries = [body[i : i + ENTRY_BYTES] for i in range(0, len(body), ENTRY_BYTES)]
    if len(entries) > MAX_BUCKET_ENTRIES:
        raise PolicyFormatError(f"over {MAX_BUCKET_ENTRIES} entries")
    if any(entry[0] != bucket for entry in entries):
        raise PolicyFormatError(f"an entry does not belong in bucket {bucket:02x}")
    held = frozenset(entries)
    if len(held) != len(entries):
        raise PolicyFormatError("repeated entries")
    return ListBucket(LIST_KINDS[kind_index], bucket, version, held)


# --- the manifest ---------------------------------------------------------------------------------

_Base64Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]  # 32 bytes
_BucketName = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{2}$")]
_Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
_DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
_PresenceSeq = Annotated[dict[_DeviceId, Annotated[int, Field(ge=0)]], Field(max_length=1000)]


class PolicyKey(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    key_id: Annotated[int, Field(ge=1, le=0xFFFF)]
    public_key: _Base64Key  # the raw Ed25519 public key, base64

    def raw(self) -> bytes:
        return base64.b64decode(self.public_key)


class SitePolicy(BaseModel):
    """The retained manifest: everything a gate of the site decides with, but the lists' entries.

    `version` grows by one with every change the server makes to the site's keys or lists;
    `buckets[kind][xx]` is the digest of each non-empty bucket (`bucket_digest`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    site_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    version: Annotated[int, Field(ge=1, lt=2**63)]
    issued_at: AwareDatetime
    keys: Annotated[list[PolicyKey], Field(max_length=MAX_KEYS)] = Field(default_factory=list)
    list_key: _Base64Key
    buckets: dict[ListKind, dict[_BucketName, _Digest]] = Field(default_factory=dict)
    # Rotating passes (protocol/rotating_passes.py): the secret gates derive each pass's from.
    rotation_secret: _Base64Key | None = None
    # Presence (added within v1): a second `in` without an `out` is refused (`hard`), recorded
    # with a warning (`soft`), or not looked at (`off`); `capacity` people inside at most.
    anti_passback: AntiPassback = "off"
    capacity: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    # For each gate of the site, the highest seq of its events that the `inside` list already
    # holds: the gate lays its own later passages over the list (its local view while offline).
    presence_seq: Annotated[
        dict[_DeviceId, Annotated[int, Field(ge=0)]], Field(max_length=1000)
    ] = Field(default_factory=dict)
    # When the `inside` list's day began (local midnight at the site): a gate drops its own
    # passages from before it, as the list did.
    presence_since: AwareDatetime | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    def list_key_bytes(self) -> bytes:
        return base64.b64decode(self.list_key)


def decode_manifest(payload: bytes) -> SitePolicy:
    try:
        return SitePolicy.model_validate_json(payload)
    except ValidationError as exc:
        where = [".".join(str(part) for part in err["loc"]) or "(message)" for err in exc.errors()]
        problem = f"a site policy manifest that breaks the protocol: {', '.join(where)}"
        raise PolicyFormatError(problem) from None


def encode_key(raw: bytes) -> str:
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return base64.b64encode(raw).decode("ascii")


def _check_kind(kind: str) -> None:
    if kind not in LIST_KINDS:
        raise ValueError(f"list {kind!r} is not one of {', '.join(LIST_KINDS)}")
