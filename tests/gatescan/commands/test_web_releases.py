"""`gatescan web --releases DIR --releases-url URL` as an operator runs it: the real process
serves the folder's signed bundles at /releases/ without a login, and its updates page offers
them (docs/operations.md, "Updating gates")."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from server.accounts.users import Accounts, Role
from server.store.database import Store
from tests.support.cli import dashboard_process
from tests.support.waiting import wait_until


def fetch(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as got:
            return got.status, got.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_web_serves_the_release_bundles_and_offers_them_on_the_updates_page(
    tmp_path: Path,
) -> None:
    releases = tmp_path / "releases"
    releases.mkdir()
    (releases / "gatescan-0.3.0.release.tar").write_bytes(b"signed bundle")
    db = tmp_path / "site.db"
    with Store(db) as store:
        token = Accounts(store.engine).create_token("ops", Role.ADMIN)
    args = ["web", "--releases", str(releases), "--releases-url", "http://gates.example/releases"]
    with dashboard_process(args, db, tmp_path) as (_process, port):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: fetch(base + "/login")[0] == 200, 30, "the dashboard")
        assert fetch(base + "/releases/gatescan-0.3.0.release.tar") == (200, b"signed bundle")
        assert fetch(base + "/releases/site.db")[0] == 404
        status, page = fetch(base + "/updates", token)
        assert status == 200 and b'<option value="0.3.0">' in page
