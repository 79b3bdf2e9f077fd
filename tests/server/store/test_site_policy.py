"""A site's policy in the store (server/store/site_policy.py): every change a gate must learn of
grows the site's version in its own transaction, a change that changes nothing does not, and the
policy built holds the active and verify-only keys and the hashed lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocol.site_policy import bucket_of, entry_hash
from server.store.database import Store
from server.store.site_keys import PassRecord, PassRegistry, SiteKeys
from server.store.site_policy import SiteLists, current_policy, ensure_policies, policy_versions

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_each_change_grows_its_site_s_version_once(tmp_path: Path) -> None:
    with Store(tmp_path / "site.db") as store:
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


def test_the_policy_holds_the_keys_that_verify_and_the_hashed_lists(tmp_path: Path) -> None:
    with Store(tmp_path / "site.db") as store:
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


def test_sites_with_gates_or_keys_but_no_policy_get_one(tmp_path: Path) -> None:
    from sqlalchemy import delete

    from server.store.tables import site_policy_table

    with Store(tmp_path / "site.db") as store:
        SiteKeys(store.engine).rotate("hq", NOW)
        with store.engine.begin() as conn:  # as a database from before site policies
            conn.execute(delete(site_policy_table))
        assert ensure_policies(store.engine, NOW) == ["hq"]
        assert ensure_policies(store.engine, NOW) == []
        assert policy_versions(store.engine) == {"hq": 1}
