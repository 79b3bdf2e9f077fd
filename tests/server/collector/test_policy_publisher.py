"""The site policy from the database to the broker (server/collector/policy_publisher.py), on real
parts: a real Mosquitto, real SQLite, `gatescan collector` and `gatescan pass|list` as processes.

Figures (printed; bounds generous, the machine is shared): the time from the change a `gatescan
pass revoke` / `list add` / `list remove` process commits (the version's changed_at, the
manifest's issued_at) to the new manifest arriving from the broker, and from the command's start
(a cold interpreter's imports included); the time to publish a list of 100,000 entries.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from gatescan.testing.broker import LocalBroker
from gatescan.testing.collector_process import CollectorProcess
from protocol.site_policy import (
    SITES_PREFIX,
    SitePolicy,
    bucket_of,
    bucket_topic,
    decode_bucket,
    entry_hash,
    manifest_topic,
)
from server.collector.policy_publisher import PolicyPublisher
from server.collector.service import Collector
from server.store.database import Store
from server.store.site_keys import PassRecord, PassRegistry, SiteKeys
from server.store.site_policy import SiteLists, current_policy, record_published
from server.store.tables import metadata
from tests.support.cli import run_gatescan
from tests.support.policy_watch import PolicyWatch
from tests.support.waiting import wait_until

ALL_SITES = f"{SITES_PREFIX}/#"
PROPAGATION_BOUND_S = 5.0  # the issue asks for 2 s; measured well under one
CCCD = "001099012345"


def gatescan(db: Path, *args: str) -> tuple[float, str]:
    """Run it; (monotonic time it started, its stdout)."""
    started = time.monotonic()
    done = run_gatescan([*args, "--db", str(db)])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return started, done.stdout


def figure(watch: PolicyWatch, what: str, manifest: SitePolicy, started: float) -> float:
    """Print the change's propagation; its seconds from the commit."""
    topic = manifest_topic(manifest.site_id)
    seconds = (watch.arrived_at[topic] - manifest.issued_at).total_seconds()
    whole = watch.arrived[topic] - started
    print(f"\n{what}: manifest v{manifest.version} from the broker {seconds * 1000:.0f} ms after"
          f" the commit ({whole * 1000:.0f} ms after the command started)")  # fmt: skip
    return seconds


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as running:
        yield running


def test_a_revocation_and_list_changes_are_retained_on_the_broker_within_seconds(
    tmp_path: Path, broker: LocalBroker
) -> None:
    db = tmp_path / "gatescan.db"
    gatescan(db, "key", "rotate", "--site", "hq")
    _, out = gatescan(db, "pass", "issue", "Lê Văn Tám", "--site", "hq", "--valid-until",
                      "2099-01-01T00:00+07:00", "--qr", str(tmp_path / "p.png"))  # fmt: skip
    found = re.search(r"^pass ([0-9a-f]{16}) ", out, re.M)
    assert found is not None
    pass_id = found.group(1)
    collector = CollectorProcess(
        broker_url=broker.url, db_url=str(db), log_path=tmp_path / "collector.log", username=""
    )
    watch = PolicyWatch(broker.url, [ALL_SITES])
    try:
        collector.wait_until_subscribed()
        first = watch.wait_manifest("hq")
        assert [key.key_id for key in first.keys] == [1] and first.buckets == {}

        figures = []
        started, _ = gatescan(db, "pass", "revoke", pass_id)
        revoked = watch.wait_manifest("hq", above=first.version)
        figures.append(figure(watch, "pass revoke", revoked, started))
        entry = entry_hash(revoked.list_key_bytes(), "pass:" + pass_id)
        topic = bucket_topic("hq", "revoked", bucket_of(entry))
        bucket = decode_bucket(watch.latest[topic])
        assert bucket.entries == {entry} and bucket.version == revoked.version
        assert revoked.buckets == {"revoked": {f"{bucket_of(entry):02x}": bucket.digest()}}
        assert watch.arrived[topic] <= watch.arrived[manifest_topic("hq")]  # buckets first

        started, _ = gatescan(db, "list", "add", "allow", "--site", "hq", CCCD)
        added = watch.wait_manifest("hq", above=revoked.version)
        figures.append(figure(watch, "list add", added, started))
        allowed = entry_hash(added.list_key_bytes(), "cccd:" + CCCD)
        allow_topic = bucket_topic("hq", "allow", bucket_of(allowed))
        assert decode_bucket(watch.latest[allow_topic]).entries == {allowed}
        assert set(added.buckets) == {"allow", "revoked"}
        assert added.list_key == first.list_key  # never changed

        started, _ = gatescan(db, "list", "remove", "allow", "--site", "hq", CCCD)
        removed = watch.wait_manifest("hq", above=added.version)
        figures.append(figure(watch, "list remove", removed, started))
        assert watch.latest[allow_topic] == b""  # the emptied bucket cleared
        assert set(removed.buckets) == {"revoked"}
        assert all(0 <= seconds < PROPAGATION_BOUND_S for seconds in figures), figures
    finally:
        watch.close()
        collector.stop()
    # A gate connecting now gets the retained policy: the manifest and the revoked bucket only.
    late = PolicyWatch(broker.url, [ALL_SITES])
    try:
        wait_until(lambda: late.manifest("hq"), 10, "the retained manifest")
        time.sleep(0.3)  # any other retained message comes in the same burst
        assert sorted(late.latest) == sorted([manifest_topic("hq"), topic])
        assert late.manifest("hq") == removed
    finally:
        late.close()


def _publisher(store: Store, broker: LocalBroker) -> tuple[Collector, PolicyPublisher]:
    collector = Collector(broker_url=broker.url, store=store, client_id="policy-collector")
    publisher = PolicyPublisher(store.engine, collector, retry_s=0.2, ack_timeout_s=3.0)
    collector.start()
    assert collector.wait_until_subscribed(10)
    publisher.start()
    return collector, publisher


def test_a_broker_or_database_outage_does_not_stop_the_publisher(
    tmp_path: Path, broker: LocalBroker
) -> None:
    now = datetime.now(UTC)
    with Store(tmp_path / "site.db") as store:
        SiteKeys(store.engine).rotate("hq", now)
        collector, publisher = _publisher(store, broker)
        try:
            watch = PolicyWatch(broker.url, [ALL_SITES])
            first = watch.wait_manifest("hq")
            watch.close()
            # The broker goes away (retained messages with it: no persistence) and comes back.
            broker.stop()
            SiteLists(store.engine).add("hq", "block", ["cccd:" + CCCD], now)
            time.sleep(1.0)
            broker.start()
            watch = PolicyWatch(broker.url, [ALL_SITES])
            after = watch.wait_manifest("hq", above=first.version)
            assert set(after.buckets) == {"block"}
            watch.close()
            # The database fails under it (a table gone), then is back.
            failures = publisher.failures
            with store.engine.begin() as conn:
                conn.execute(text("ALTER TABLE site_policy RENAME TO site_policy_away"))
            wait_until(lambda: publisher.failures > failures, 10, "a failed round")
            with store.engine.begin() as conn:
                conn.execute(text("ALTER TABLE site_policy_away RENAME TO site_policy"))
            SiteLists(store.engine).remove("hq", "block", ["cccd:" + CCCD], now)
            watch = PolicyWatch(broker.url, [ALL_SITES])
            last = watch.wait_manifest("hq", above=after.version)
            assert last.buckets == {}
            watch.close()
        finally:
            publisher.stop()
            collector.stop()


def test_a_revocation_past_its_pass_s_end_leaves_with_a_new_version(tmp_path: Path) -> None:
    """Nothing runs when a revoked pass ends: the publisher's rebuild finds the content changed
    and takes a new version (checked on the store alone, with a clock moved on)."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with Store(tmp_path / "site.db") as store:
        key = SiteKeys(store.engine).rotate("hq", now)
        passes = PassRegistry(store.engine)
        passes.add(PassRecord("00112233aabbccdd", "A", "hq", key.key_id, now,
                              now + timedelta(hours=1), True, now))  # fmt: skip
        passes.revoke("00112233aabbccdd", now)
        built = current_policy(store.engine, "hq", now)
        assert "revoked" in built.manifest.buckets
        record_published(store.engine, built, {})
        later = now + timedelta(hours=1, minutes=3)  # past its end and the clock skew
        rebuilt = current_policy(store.engine, "hq", later)
        assert rebuilt.version == built.version + 1 and rebuilt.manifest.buckets == {}
        assert current_policy(store.engine, "hq", later).version == rebuilt.version


def test_a_list_of_100000_entries_travels_in_at_most_256_buckets_under_64_kib(
    tmp_path: Path, broker: LocalBroker
) -> None:
    now = datetime.now(UTC)
    subjects = [f"cccd:{n:012d}" for n in range(1_000_000_000, 1_000_100_000)]
    with Store(tmp_path / "site.db") as store:
        SiteKeys(store.engine).rotate("hq", now)
        SiteLists(store.engine).add("hq", "allow", subjects, now)
        watch = PolicyWatch(broker.url, [ALL_SITES])
        started = time.monotonic()
        collector, publisher = _publisher(store, broker)
        try:
            manifest = watch.wait_manifest("hq", timeout=60)
            took = time.monotonic() - started
        finally:
            publisher.stop()
            collector.stop()
            watch.close()
    buckets = {t: p for t, p in watch.latest.items() if "/list/allow/" in t}
    sizes = [len(p) for p in buckets.values()]
    print(f"\n100,000 allow entries: {len(buckets)} buckets, largest {max(sizes)} bytes,"
          f" manifest {len(watch.latest[manifest_topic('hq')])} bytes; published in"
          f" {took:.2f} s (collector start included)")  # fmt: skip
    assert len(buckets) <= 256 and len(manifest.buckets["allow"]) == len(buckets)
    assert max(sizes) < 64 * 1024 and len(watch.latest[manifest_topic("hq")]) < 64 * 1024
    held = set().union(*(decode_bucket(p).entries for p in buckets.values()))
    assert len(held) == 100_000
    assert entry_hash(manifest.list_key_bytes(), subjects[12345]) in held


def test_an_older_database_gains_the_policy_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path) as store, store.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # made before migrations
        for name in ("site_policy", "site_lists", "site_policy_buckets"):
            conn.execute(text(f"DROP TABLE {name}"))
    with Store(path) as store:
        assert {"site_policy", "site_lists", "site_policy_buckets"} <= set(metadata.tables)
        SiteLists(store.engine).add("hq", "allow", ["cccd:" + CCCD], datetime.now(UTC))
        assert SiteLists(store.engine).entries("hq", "allow")[0][0] == "cccd:" + CCCD
