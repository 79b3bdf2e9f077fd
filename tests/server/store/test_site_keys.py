"""Site keys and passes (server/store/site_keys.py) on a real SQLite store: key ids unique
across sites, one active key per site, a retired key verifying nothing, the private key kept out
of what a key shows, and an older database gaining both tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from protocol.passes import PassBody, new_pass_id, sign_pass, verify_pass
from protocol.verdicts import Reason
from server.store.database import Store
from server.store.site_keys import PassRecord, PassRegistry, SiteKeyError, SiteKeys

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_key_ids_are_unique_across_sites_and_one_key_per_site_is_active(
    store_url: Path | URL,
) -> None:
    with Store(store_url) as store:
        keys = SiteKeys(store.engine)
        made = [keys.rotate(site, NOW).key_id for site in ("hq", "branch", "hq")]
        assert made == [1, 2, 3]
        assert [(k.key_id, k.state) for k in keys.all("hq")] == [(1, "verify-only"), (3, "active")]
        assert keys.active("branch") is not None and keys.active("branch").key_id == 2  # type: ignore[union-attr]
        with pytest.raises(SiteKeyError) as refused:
            keys.retire(3, NOW)
        assert refused.value.reason == "only_active"
        with pytest.raises(SiteKeyError) as unknown:
            keys.retire(9, NOW)
        assert unknown.value.reason == "unknown"


def test_a_pass_verifies_under_the_site_keys_until_its_key_is_retired(
    store_url: Path | URL,
) -> None:
    with Store(store_url) as store:
        keys = SiteKeys(store.engine)
        first = keys.rotate("hq", NOW)
        body = PassBody(first.key_id, new_pass_id(), NOW, NOW + timedelta(days=1))
        signed = sign_pass(body, keys.signing_key(first.key_id))
        keys.rotate("hq", NOW)
        assert verify_pass(signed, keys.public_keys("hq"), NOW) is Reason.OK
        assert verify_pass(signed, keys.public_keys("branch"), NOW) is Reason.BAD_SIGNATURE
        assert keys.retire(first.key_id, NOW).retired_at == NOW
        assert verify_pass(signed, keys.public_keys("hq"), NOW) is Reason.BAD_SIGNATURE


def test_a_key_shows_no_private_key(store_url: Path | URL) -> None:
    with Store(store_url) as store:
        keys = SiteKeys(store.engine)
        key = keys.rotate("hq", NOW)
        seed = keys.signing_key(key.key_id).private_bytes_raw()
        assert seed.hex() not in repr(key) and repr(seed) not in repr(key)


def test_an_older_database_gains_the_keys_and_passes(store_url: Path | URL) -> None:
    with Store(store_url) as older, older.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # made before migrations
        conn.execute(text("DROP TABLE passes"))
        conn.execute(text("DROP TABLE site_keys"))
    with Store(store_url) as store:
        key = SiteKeys(store.engine).rotate("hq", NOW)
        passes = PassRegistry(store.engine)
        passes.add(PassRecord("00" * 8, "Trần Văn Ơn", "hq", key.key_id, NOW,
                              NOW + timedelta(hours=1), True, NOW))  # fmt: skip
        revoked = passes.revoke("00" * 8, NOW)
        assert revoked is not None and revoked.revoked and revoked.holder_name == "Trần Văn Ơn"
        assert passes.revoke("ff" * 8, NOW) is None
