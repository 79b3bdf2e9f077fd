"""The site policy a gate holds: applied from the server's messages, kept on disk and loaded at
start (a gate restarted with no network decides with it), and never lost to a bad message."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.site_policy.files import MANIFEST_FILE, policy_folder
from device.site_policy.held import HeldPolicy
from device.site_policy.holder import PolicyHolder
from gatescan.testing.site_policies import SampleSite
from protocol.site_policy import (
    BUCKET_MAGIC,
    bucket_topic,
    entry_hash,
    list_subject,
    manifest_topic,
)

SITE = "Bến xe Mỹ Đình"
CARD = "079193012345"
OTHER_CARD = "001090012345"
PASS_ID = "0123456789abcdef"


@pytest.fixture
def site() -> SampleSite:
    made = SampleSite(SITE)
    made.allow(CARD)
    made.block(OTHER_CARD)
    made.revoke(PASS_ID)
    made.add("inside", CARD)
    return made


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[PolicyHolder]:
    held = PolicyHolder(SITE, tmp_path)
    yield held
    held.close()


def deliver(holder: PolicyHolder, messages: list[tuple[str, bytes]]) -> None:
    for topic, payload in messages:
        holder.handle(topic, payload)


def test_a_gate_with_no_policy_holds_nothing_and_trusts_nothing(holder: PolicyHolder) -> None:
    held = holder.read()
    assert held.version is None and not held.keys and not held.trusts_anything
    assert not held.listed("allow", list_subject(CARD))


def test_the_manifest_and_buckets_give_keys_and_lists(
    holder: PolicyHolder, site: SampleSite
) -> None:
    deliver(holder, site.messages())
    held = holder.read()
    assert held.version == site.version
    assert set(held.keys) == {site.key_id}
    assert held.listed("allow", "cccd:" + CARD)
    assert held.listed("block", "cccd:" + OTHER_CARD)
    assert held.listed("revoked", "pass:" + PASS_ID)
    assert not held.listed("allow", "cccd:" + OTHER_CARD)
    assert held.trusts_anything


def test_buckets_before_their_manifest_are_kept(holder: PolicyHolder, site: SampleSite) -> None:
    messages = site.messages()
    deliver(holder, messages[:-1])  # retained messages come in no set order
    assert holder.read().manifest is None
    deliver(holder, messages[-1:])
    assert holder.read().listed("allow", "cccd:" + CARD)


def test_what_is_held_survives_a_restart_with_no_network(tmp_path: Path, site: SampleSite) -> None:
    first = PolicyHolder(SITE, tmp_path)
    deliver(first, site.messages())
    assert first.flush()
    first.close()

    again = PolicyHolder(SITE, tmp_path)
    try:
        held = again.read()
        assert held.version == site.version and set(held.keys) == {site.key_id}
        assert held.listed("allow", "cccd:" + CARD)
        assert held.listed("revoked", "pass:" + PASS_ID)
        assert held.listed("inside", "cccd:" + CARD)  # every kind of list, presence included
    finally:
        again.close()


def test_a_removal_reaches_the_gate_and_its_disk(tmp_path: Path, site: SampleSite) -> None:
    holder = PolicyHolder(SITE, tmp_path)
    deliver(holder, site.messages())
    touched = site.remove("allow", CARD)
    deliver(holder, site.messages(only=touched))  # the emptied bucket: an empty payload
    assert not holder.read().listed("allow", "cccd:" + CARD)
    assert holder.read().version == site.version
    holder.close()
    again = PolicyHolder(SITE, tmp_path)
    assert not again.read().listed("allow", "cccd:" + CARD)
    assert again.read().listed("block", "cccd:" + OTHER_CARD)
    again.close()


def test_a_manifest_drops_the_buckets_it_no_longer_names(
    tmp_path: Path, holder: PolicyHolder, site: SampleSite
) -> None:
    deliver(holder, site.messages())
    site.remove("block", OTHER_CARD)
    # The server's clear of the bucket is lost (say the gate was offline when it was sent):
    # the manifest alone is the authority.
    deliver(holder, site.messages()[-1:])
    assert not holder.read().listed("block", "cccd:" + OTHER_CARD)
    assert holder.flush()
    folder = policy_folder(tmp_path, SITE)
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [MANIFEST_FILE, *(f"{b.kind}-{b.bucket:02x}.bin" for b in site.buckets())]
    )


def test_an_older_manifest_or_bucket_never_replaces_a_newer_one(
    holder: PolicyHolder, site: SampleSite
) -> None:
    old = site.messages()
    touched = site.revoke("fedcba9876543210")
    new = site.messages(only=touched)
    deliver(holder, old + new)
    assert holder.read().listed("revoked", "pass:fedcba9876543210")
    deliver(holder, old)  # replayed old messages: an older manifest, older (or equal) buckets
    held = holder.read()
    assert held.version == site.version
    assert held.listed("revoked", "pass:fedcba9876543210")


HOSTILE = [
    b"",
    b"{",
    b"null",
    b'{"v": 2}',
    b"\xff" * 100,
    b'{"site_id": "x", "version": 1}',
    b"[]" * 40_000,
]


def test_hostile_payloads_are_ignored_and_lose_nothing(
    holder: PolicyHolder, site: SampleSite, caplog: pytest.LogCaptureFixture
) -> None:
    deliver(holder, site.messages())
    before = holder.read()
    good_bucket = site.bucket("allow", entry_hash(site.list_key, "cccd:" + CARD)[0])
    number = good_bucket.bucket
    topic = bucket_topic(SITE, "allow", number)
    wrong_number = bucket_topic(SITE, "allow", (number + 1) % 256)
    bad_key = site.manifest().model_dump(mode="json")
    bad_key["version"] += 1
    bad_key["keys"].append(dict(bad_key["keys"][0]))  # a key id given twice
    with caplog.at_level(logging.WARNING, logger="gatescan.site_policy"):
        for payload in HOSTILE:
            holder.handle(manifest_topic(SITE), payload)
            holder.handle(topic, payload + b"x")
        holder.handle(topic, BUCKET_MAGIC + b"\x00" * 9 + b"\x01")  # a list index out of range
        holder.handle(topic, good_bucket.to_bytes()[:-1])  # not whole entries
        holder.handle(wrong_number, good_bucket.to_bytes())  # another bucket's payload
        holder.handle("gatescan/v1/sites/x/policy/list/allow/zz", good_bucket.to_bytes())
        holder.handle("gatescan/v1/sites", b"")
        holder.handle(manifest_topic(SITE), json.dumps(bad_key).encode())
    assert holder.read() is before
    assert holder.read().listed("allow", "cccd:" + CARD)


def test_another_sites_messages_are_ignored(holder: PolicyHolder, site: SampleSite) -> None:
    deliver(holder, site.messages())
    before = holder.read()
    other = SampleSite("Bến xe Giáp Bát", version=before.version + 5)  # type: ignore[operator]
    other.allow(OTHER_CARD)
    deliver(holder, other.messages())
    # Another site's manifest, on this site's own topic: refused by its site_id.
    holder.handle(manifest_topic(SITE), other.manifest().to_json())
    assert holder.read() is before


def test_a_gate_without_a_site_holds_nothing(tmp_path: Path, site: SampleSite) -> None:
    holder = PolicyHolder("", tmp_path)
    deliver(holder, site.messages())
    assert holder.read().manifest is None
    holder.close()
    assert not (tmp_path / "site_policy").exists()


def test_a_damaged_file_on_disk_is_left_and_the_rest_used(tmp_path: Path, site: SampleSite) -> None:
    first = PolicyHolder(SITE, tmp_path)
    deliver(first, site.messages())
    first.close()
    folder = policy_folder(tmp_path, SITE)
    damaged = next(folder.glob("block-*.bin"))
    damaged.write_bytes(b"GSL1 torn")
    (folder / ".allow-00.bin.1234abcd.tmp").write_bytes(b"a killed writer's")

    again = PolicyHolder(SITE, tmp_path)
    held = again.read()
    again.close()
    assert held.version == site.version and held.listed("allow", "cccd:" + CARD)
    assert not held.listed("block", "cccd:" + OTHER_CARD)
    assert damaged.exists() and not list(folder.glob(".*.tmp"))


def test_readers_never_see_a_half_applied_message(holder: PolicyHolder) -> None:
    """The frame thread reads snapshots while the MQTT thread applies 60 changes."""
    site = SampleSite(SITE)
    cards = [f"0010900{index:05d}" for index in range(60)]
    deliver(holder, site.messages())
    stop = threading.Event()
    seen: list[bool] = []

    def read() -> None:
        while not stop.is_set():
            held = holder.read()
            version = held.version or 0
            # Every card added before the manifest's version is on the list it names.
            upto = version - 1
            seen.append(all(held.listed("allow", "cccd:" + card) for card in cards[:upto]))

    reader = threading.Thread(target=read)
    reader.start()
    for card in cards:
        deliver(holder, site.messages(only=site.allow(card)))
    stop.set()
    reader.join()
    assert seen and all(seen)
    assert all(holder.read().listed("allow", "cccd:" + card) for card in cards)


def test_the_versions_a_gate_reports_are_its_keys_and_each_lists_newest_bucket() -> None:
    """What the telemetry says of the site policy held (key ids; per list the policy version
    it last changed in), from the snapshot a gate holds once it has every message."""
    site = SampleSite(SITE, key_id=7)
    site.allow("079203012345")  # version 2
    site.block("079203099999")  # version 3
    site.allow("079203055555")  # version 4

    held = site.held()

    assert held.version == site.version == 4
    assert held.key_ids == [7]
    assert held.list_versions() == {"allow": 4, "block": 3}
    assert HeldPolicy().key_ids == [] and HeldPolicy().list_versions() == {}
