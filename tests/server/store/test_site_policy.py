"""A site's policy in the store (server/store/site_policy.py): every change a gate must learn of
grows the site's version in its own transaction, a change that changes nothing does not, and the
policy built holds the active and verify-only keys and the hashed lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL

from protocol.site_policy import bucket_of, entry_hash
from server.store.database import Store
from server.store.site_keys import PassRecord, PassRegistry, SiteKeys
from server.store.site_policy import SiteLists, current_policy, ensure_policies, policy_versions

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_each_change_grows_its_site_s_version_once(store_url: Path | URL) -> None:
    with Store(store_url) as store:
        keys, lists = SiteKeys(store.engine), SiteLists(store.engine)
        passes = PassRegistry(store.engine)
        first = keys.rotate("hq", NOW)
        assert policy_versions(store.engine) == {"hq": 1}
        keys.rotate("hq", NOW)
        keys.rotate("annex", NOW)
        assert policy_versions(store.engine) == {"hq": 2, "annex": 1}
        keys.retire(first.key_id, NOW)
        assert policy_versions(store.engine)["hq"] == 3
        passes.add(PassRecord("0011223344556677", "A", "hq", 2, NOW, NOW + timedelta(days=1),
                              True, NOW))  # fmt: skip
        assert policy_versions(store.engine)["hq"] == 3  # issuing tells gates nothing
        passes.revoke("0011223344556677", NOW)
        passes.revoke("0011223344556677", NOW)  # the first time counts
        assert policy_versions(store.engine)["hq"] == 4
        assert lists.add("hq", "allow", ["cccd:001099012345", "cccd:001099012346"], NOW) == 2
        assert lists.add("hq", "allow", ["cccd:001099012345"], NOW) == 0
        assert policy_versions(store.engine)["hq"] == 5
        assert lists.remove("hq", "allow", ["cccd:079203001234"], NOW) == 0
        assert lists.remove("hq", "allow", ["cccd:001099012345"], NOW) == 1
        assert policy_versions(store.engine) == {"hq": 6, "annex": 1}


def test_the_policy_holds_the_keys_that_verify_and_the_hashed_lists(store_url: Path | URL) -> None:
    with Store(store_url) as store:
        keys = SiteKeys(store.engine)
        old = keys.rotate("hq", NOW)
        middle = keys.rotate("hq", NOW)
        active = keys.rotate("hq", NOW)
        keys.retire(old.key_id, NOW)
        SiteLists(store.engine).add("hq", "block", ["cccd:079203001234"], NOW)
        built = current_policy(store.engine, "hq", NOW)
        manifest = built.manifest
        assert [k.key_id for k in manifest.keys] == [middle.key_id, active.key_id]
        assert manifest.keys[1].raw() == active.public_key
        entry = entry_hash(manifest.list_key_bytes(), "cccd:079203001234")
        assert built.entries == {("block", bucket_of(entry)): frozenset({entry})}
        assert b"079203001234" not in manifest.to_json()
        # The list key is made once and kept.
        keys.rotate("hq", NOW)
        assert current_policy(store.engine, "hq", NOW).manifest.list_key == manifest.list_key


def test_sites_with_gates_or_keys_but_no_policy_get_one(store_url: Path | URL) -> None:
    from sqlalchemy import delete

    from server.store.tables import site_policy_table

    with Store(store_url) as store:
        SiteKeys(store.engine).rotate("hq", NOW)
        with store.engine.begin() as conn:  # as a database from before site policies
            conn.execute(delete(site_policy_table))
        assert ensure_policies(store.engine, NOW) == ["hq"]
        assert ensure_policies(store.engine, NOW) == []
        assert policy_versions(store.engine) == {"hq": 1}


def test_who_is_inside_goes_into_the_policy_of_a_site_that_uses_it(store_url: Path | URL) -> None:
    """The `inside` list (people whose last passage today went in), each gate's highest seq,
    the day's start: only for a site with anti-passback or a capacity; a passage refreshes
    them under a new version without reading the site's other lists again."""
    from zoneinfo import ZoneInfo

    from protocol.verdicts import Direction, VerdictStatus
    from server.store.site_policy import refresh_presence, set_presence_rules
    from tests.support.web import cccd_event

    hcmc = ZoneInfo("Asia/Ho_Chi_Minh")
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 10:00 in Ho Chi Minh City
    alice, bob = "079190000001", "079190000002"
    with Store(store_url) as store:
        SiteKeys(store.engine).rotate("hq", now)
        store.add_events(
            [
                cccd_event(1, subject=alice, ts=now - timedelta(minutes=5)),
                cccd_event(2, subject=bob, ts=now - timedelta(minutes=4)),
                cccd_event(
                    3,
                    subject=bob,
                    ts=now - timedelta(minutes=3),
                    device="gate-out",
                    direction=Direction.OUT,
                ),
                cccd_event(4, subject="079190000003", ts=now, status=VerdictStatus.DENIED),
            ],
            received_at=now,
        )
        off = current_policy(store.engine, "hq", now, hcmc)
        assert "inside" not in off.manifest.buckets and off.manifest.presence_seq == {}
        set_presence_rules(store.engine, "hq", now, anti_passback="hard", capacity=100)
        built = current_policy(store.engine, "hq", now, hcmc)
        key = bytes(built.manifest.list_key_bytes())
        inside = {e for (kind, _), held in built.entries.items() if kind == "inside" for e in held}
        assert inside == {entry_hash(key, f"cccd:{alice}")}  # Bob left; the refused never came
        assert built.manifest.presence_seq == {"gate-1": 4, "gate-out": 3}
        assert built.manifest.presence_since == datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
        assert (built.manifest.anti_passback, built.manifest.capacity) == ("hard", 100)
        assert refresh_presence(store.engine, built, now, hcmc) is built  # nothing new
        store.add_events(
            [cccd_event(5, subject=bob, ts=now + timedelta(minutes=1))], received_at=now
        )
        again = refresh_presence(store.engine, built, now, hcmc)
        assert again is not None and again.version == built.version + 1
        inside = {e for (kind, _), held in again.entries.items() if kind == "inside" for e in held}
        assert inside == {entry_hash(key, f"cccd:{alice}"), entry_hash(key, f"cccd:{bob}")}
        assert again.manifest.presence_seq == {"gate-1": 5, "gate-out": 3}
        assert current_policy(store.engine, "hq", now, hcmc).content_digest == again.content_digest
