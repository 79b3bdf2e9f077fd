"""The site policy contract: topics, entry hashes, buckets and the manifest."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from protocol.site_policy import (
    BUCKETS,
    MAX_BUCKET_ENTRIES,
    ListBucket,
    PolicyFormatError,
    SitePolicy,
    bucket_of,
    bucket_topic,
    decode_bucket,
    decode_manifest,
    encode_key,
    entry_hash,
    list_subject,
    manifest_topic,
    parse_policy_topic,
    policy_subscription,
    site_topic_level,
)

KEY = bytes(range(32))


def test_a_free_text_site_id_becomes_one_safe_topic_level():
    assert site_topic_level("demo-site") == "demo-site"
    level = site_topic_level("Trụ sở/1+#")
    assert "/" not in level and "+" not in level and "#" not in level and " " not in level
    assert site_topic_level("a b") != site_topic_level("a_b")
    with pytest.raises(ValueError):
        site_topic_level("")


def test_topics_parse_back_and_strangers_do_not():
    assert parse_policy_topic(manifest_topic("hq")).kind is None
    parsed = parse_policy_topic(bucket_topic("Trụ sở", "revoked", 0xAB))
    assert parsed is not None and (parsed.kind, parsed.bucket) == ("revoked", 0xAB)
    assert parsed.site_level == site_topic_level("Trụ sở")
    assert policy_subscription("hq") == "gatescan/v1/sites/hq/policy/#"
    for stranger in (
        "gatescan/v1/sites/hq/policy/list/allow/zz",
        "gatescan/v1/sites/hq/policy/list/other/00",
        "gatescan/v1/sites/hq/policy/list/allow/000",
        "gatescan/v1/devices/x/status",
        "gatescan/v1/sites/hq/policy/manifest/extra",
    ):
        assert parse_policy_topic(stranger) is None
    with pytest.raises(ValueError):
        bucket_topic("hq", "allow", BUCKETS)


def test_subjects_are_cccd_numbers_or_pass_ids_and_nothing_else():
    assert list_subject(" 079123456789 ") == "cccd:079123456789"
    assert list_subject("00112233AABBCCDD") == "pass:00112233aabbccdd"
    for bad in ("07912345678", "0791234567890", "not an id", "0011223344556677aa", ""):
        with pytest.raises(ValueError):
            list_subject(bad)


def test_entry_hashes_depend_on_the_key_and_the_subject():
    one = entry_hash(KEY, "cccd:079123456789")
    assert len(one) == 16
    assert one == entry_hash(KEY, "cccd:079123456789")
    assert one != entry_hash(bytes(32), "cccd:079123456789")
    assert one != entry_hash(KEY, "cccd:079123456788")


def test_a_bucket_round_trips_and_hostile_payloads_are_refused():
    entries = {e for e in (entry_hash(KEY, f"cccd:0791234567{i:02d}") for i in range(100))}
    chosen = frozenset(e for e in entries if bucket_of(e) == bucket_of(next(iter(entries))))
    bucket = ListBucket("allow", bucket_of(next(iter(chosen))), 7, chosen)
    back = decode_bucket(bucket.to_bytes())
    assert back == bucket and back.digest() == bucket.digest()
    raw = bucket.to_bytes()
    for hostile in (b"", b"GSL1", raw[:-1], b"XXXX" + raw[4:], raw[:13] + b"\x09" + raw[14:]):
        with pytest.raises(PolicyFormatError):
            decode_bucket(hostile)
    foreign = ListBucket("block", (bucket.bucket + 1) % BUCKETS, 1, chosen)
    with pytest.raises(PolicyFormatError):
        decode_bucket(foreign.to_bytes())  # entries that belong in another bucket


def test_a_bucket_over_the_broker_limit_is_refused_when_made():
    entries = frozenset(bytes([5]) + os.urandom(15) for _ in range(MAX_BUCKET_ENTRIES + 1))
    with pytest.raises(ValueError, match="over"):
        ListBucket("allow", 5, 1, entries).to_bytes()
    fits = ListBucket("allow", 5, 1, frozenset(list(entries)[:MAX_BUCKET_ENTRIES]))
    assert len(fits.to_bytes()) < 64 * 1024 - 200


def test_the_manifest_round_trips_and_refuses_what_breaks_it():
    policy = SitePolicy(
        site_id="Trụ sở",
        version=3,
        issued_at=datetime(2026, 12, 6, tzinfo=UTC),
        keys=[{"key_id": 1, "public_key": encode_key(bytes(32))}],
        list_key=encode_key(KEY),
        buckets={"revoked": {"ab": "0123456789abcdef"}},
    )
    assert decode_manifest(policy.to_json()) == policy
    assert policy.list_key_bytes() == KEY
    for hostile in (b"", b"{}", b"[1]", b"\xff\xfe", policy.to_json().replace(b'"ab"', b'"zz"')):
        with pytest.raises(PolicyFormatError):
            decode_manifest(hostile)
