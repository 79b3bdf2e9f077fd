"""`gatescan user passwd|disable|enable|list` and `gatescan token list|revoke` as an operator
runs them, on the database a running dashboard (TestClient) serves, a real SQLite file and a real
PostgreSQL (tests/support/postgres.py): the command's `main` in this process (its parser, stdin,
output and exit code), and the first test a real process, so the process is run too."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from server.accounts.users import Accounts, Role
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.cli import run_gatescan, run_gatescan_here
from tests.support.web import (
    BACKENDS,
    FAST_HASHER,
    PASSWORD,
    both_backends_with_schema,
    log_in,
    login_form_token,
)

NEW_PASSWORD = "mật khẩu mới dài"


TZ = {"TZ": "Asia/Ho_Chi_Minh"}


def gatescan(
    args: Sequence[str], db: Path | str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The command's main in this process, with a known local time zone (Ho Chi Minh City)."""
    return run_gatescan_here([*args, "--db", str(db)], stdin=stdin, env=TZ)


def gatescan_process(
    args: Sequence[str], db: Path | str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process, with the same time zone."""
    return run_gatescan([*args, "--db", str(db)], stdin=stdin, env=TZ)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    """Each test once on a SQLite file and once on a PostgreSQL database."""
    return both_backends_with_schema(request, tmp_path)


def db_of(store: Store) -> str:
    """The store's database as --db names it (a sqlite:/// or postgresql+psycopg:// URL)."""
    return store.engine.url.render_as_string(hide_password=False)


def table(output: str) -> dict[str, dict[str, str]]:
    """`user list` / `token list` output as {name: {column: value}} (columns split on 2 spaces)."""
    header, *lines = [line for line in output.splitlines() if line.strip()]
    starts = [header.index(word) for word in header.split("  ") if word.strip()]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def logged_in(app: FastAPI, name: str) -> TestClient:
    browser = TestClient(app, follow_redirects=False)
    log_in(browser, name)
    assert browser.get("/api/v1/me").status_code == 200
    return browser


def test_passwd_from_stdin_changes_the_password_and_ends_the_user_s_sessions(
    app: FastAPI, store: Store
) -> None:
    browsers = [logged_in(app, "manager") for _ in range(2)]
    other = logged_in(app, "viewer")

    result = gatescan_process(["user", "passwd", "manager"], db_of(store), NEW_PASSWORD + "\n")

    assert result.returncode == 0, result.stderr
    assert "2 sessions ended" in result.stderr
    assert NEW_PASSWORD not in result.stdout + result.stderr
    assert [b.get("/api/v1/me").status_code for b in browsers] == [401, 401]
    assert other.get("/api/v1/me").status_code == 200  # nobody else is logged out
    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    assert accounts.authenticate("manager", PASSWORD) is None
    assert accounts.authenticate("manager", NEW_PASSWORD) is not None


def test_a_password_change_keeps_the_session_that_made_it(store: Store) -> None:
    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    accounts.add_user("lan", Role.MANAGER, PASSWORD)
    account = accounts.authenticate("lan", PASSWORD)
    assert account is not None
    here, elsewhere = accounts.start_session(account), accounts.start_session(account)

    assert accounts.set_password("lan", NEW_PASSWORD, keep_session=here.secret) == 1

    assert accounts.session(here.secret) is not None
    assert accounts.session(elsewhere.secret) is None


def test_disable_logs_the_user_out_at_once_and_enable_lets_them_back(
    app: FastAPI, store: Store
) -> None:
    browser = logged_in(app, "manager")

    disabled = gatescan(["user", "disable", "manager"], db_of(store))

    assert disabled.returncode == 0, disabled.stderr
    assert "1 session ended" in disabled.stderr
    with store.engine.connect() as conn:
        sessions = conn.exec_driver_sql("SELECT user_name FROM web_sessions").scalars().all()
    assert "manager" not in sessions  # gone from the database, not only refused when used
    assert browser.get("/api/v1/me").status_code == 401
    fresh = TestClient(app, follow_redirects=False)
    form = {"username": "manager", "password": PASSWORD, "csrf_token": login_form_token(fresh)}
    assert fresh.post("/login", data=form).status_code == 401

    enabled = gatescan(["user", "enable", "manager"], db_of(store))

    assert enabled.returncode == 0, enabled.stderr
    logged_in(app, "manager")
    changes = AuditLog(store.engine).rows(action="account")  # newest first
    assert [(r.subject, r.details["change"]) for r in changes] == [
        ("manager", "user enable"),
        ("manager", "user disable"),
    ]
    assert changes[1].details["sessions_ended"] == 1
    assert all(r.actor.startswith("cli") for r in changes)


def test_user_list_shows_role_status_and_last_login_but_no_hash(app: FastAPI, store: Store) -> None:
    logged_in(app, "manager")  # at START: 03:00 UTC, 10:00 in Ho Chi Minh City
    assert gatescan(["user", "disable", "viewer"], db_of(store)).returncode == 0

    result = gatescan(["user", "list"], db_of(store))

    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert sorted(rows) == ["admin", "manager", "technician", "tracer", "viewer"]
    assert rows["manager"]["ROLE"] == "manager"
    assert rows["manager"]["LAST LOGIN"] == "2026-03-02 10:00:00+07:00"
    assert (rows["viewer"]["STATUS"], rows["viewer"]["LAST LOGIN"]) == ("disabled", "never")
    assert rows["admin"]["STATUS"] == "enabled"
    assert "scrypt$" not in result.stdout


def test_token_list_shows_when_each_was_used_never_the_token(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    accounts = Accounts(store.engine)
    used = accounts.create_token("nightly", Role.VIEWER)
    unused = accounts.create_token("backup", Role.ADMIN)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {used}"}).is_success

    result = gatescan(["token", "list"], db_of(store))

    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows["nightly"]["ROLE"] == "viewer"
    assert rows["nightly"]["LAST USED"] == "2026-03-02 10:00:00+07:00"  # the app's clock
    assert (rows["backup"]["STATUS"], rows["backup"]["LAST USED"]) == ("active", "never")
    with store.engine.connect() as conn:
        digests = conn.exec_driver_sql("SELECT token_sha256 FROM api_tokens").scalars().all()
    for secret in (used, unused, *digests):
        assert secret not in result.stdout + result.stderr


def test_a_revoked_token_opens_nothing(app: FastAPI, client: TestClient, store: Store) -> None:
    token = Accounts(store.engine).create_token("nightly", Role.VIEWER)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200

    result = gatescan(["token", "revoke", "nightly"], db_of(store))

    assert result.returncode == 0, result.stderr
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert table(gatescan(["token", "list"], db_of(store)).stdout)["nightly"]["STATUS"] == "revoked"


@pytest.mark.parametrize(
    "args",
    [
        ["user", "passwd", "nobody"],
        ["user", "disable", "nobody"],
        ["user", "enable", "nobody"],
        ["token", "revoke", "nobody"],
    ],
)
def test_an_unknown_name_is_a_clear_error(app: FastAPI, store: Store, args: list[str]) -> None:
    result = gatescan(args, db_of(store), NEW_PASSWORD + "\n")
    kind = args[0]
    assert (result.returncode, result.stderr.strip()) == (
        3,
        f"gatescan {kind} {args[1]}: no {kind} named 'nobody' (see: gatescan {kind} list)",
    )


def test_a_short_password_or_a_missing_database_changes_nothing(
    app: FastAPI, store: Store, tmp_path: Path
) -> None:
    short = gatescan(["user", "passwd", "manager"], db_of(store), "short\n")
    assert (short.returncode, "shorter than 12" in short.stderr) == (2, True)
    assert Accounts(store.engine, hasher=FAST_HASHER).authenticate("manager", PASSWORD)

    typo = tmp_path / "no-such.db"
    missing = gatescan(["user", "list"], typo)
    assert (missing.returncode, f"no database at {typo}" in missing.stderr) == (2, True)
    assert not typo.exists()  # not created empty by a typo


def test_user_add_and_token_create_take_sites_and_list_them(app: FastAPI, store: Store) -> None:
    added = gatescan(
        ["user", "add", "guard-lead", "--role", "manager", "--site", "hq", "--site", "annex"],
        db_of(store),
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    created = gatescan(
        ["token", "create", "annex-feed", "--role", "viewer", "--site", "annex"], db_of(store)
    )
    assert created.returncode == 0, created.stderr

    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    account = accounts.authenticate("guard-lead", PASSWORD)
    assert account is not None and account.sites == frozenset({"hq", "annex"})
    token = accounts.account_for_token(created.stdout.split()[0])
    assert token is not None and token.sites == frozenset({"annex"})
    users = table(gatescan(["user", "list"], db_of(store)).stdout)
    assert users["guard-lead"]["SITES"] == "annex,hq"
    assert users["manager"]["SITES"] == users["admin"]["SITES"] == "every site"
    tokens = table(gatescan(["token", "list"], db_of(store)).stdout)
    assert tokens["annex-feed"]["SITES"] == "annex"
    [row] = [r for r in AuditLog(store.engine).rows(action="account") if r.subject == "guard-lead"]
    assert row.details["sites"] == ["annex", "hq"]


@pytest.mark.parametrize(
    "args",
    [
        ["user", "add", "boss", "--role", "admin", "--site", "hq"],
        ["token", "create", "scraper", "--role", "metrics", "--site", "hq"],
        ["user", "add", "odd", "--role", "viewer", "--site", " hq"],
    ],
    ids=["admin", "metrics", "spaces"],
)
def test_sites_are_refused_for_an_admin_a_metrics_token_and_a_bad_name(
    app: FastAPI, store: Store, args: list[str]
) -> None:
    result = gatescan(args, db_of(store), stdin=PASSWORD + "\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "site" in result.stderr


def test_tracer_is_a_role_for_users_and_tokens(app: FastAPI, store: Store) -> None:
    added = gatescan(["user", "add", "so-y-te", "--role", "tracer"], db_of(store), PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    created = gatescan(["token", "create", "cdc", "--role", "tracer"], db_of(store))
    assert created.returncode == 0, created.stderr

    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    user = accounts.authenticate("so-y-te", PASSWORD)
    token = accounts.account_for_token(created.stdout.split()[0])
    assert user is not None and (user.role, user.sites) == (Role.TRACER, None)
    assert token is not None and (token.role, token.sites) == (Role.TRACER, None)
    assert table(gatescan(["user", "list"], db_of(store)).stdout)["so-y-te"]["ROLE"] == "tracer"


def test_technician_is_a_role_for_users_and_tokens_held_on_named_sites(
    app: FastAPI, store: Store
) -> None:
    added = gatescan(
        ["user", "add", "ky-thuat", "--role", "technician", "--site", "hq"],
        db_of(store),
        PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    created = gatescan(
        ["token", "create", "fleet-bot", "--role", "technician", "--site", "hq"], db_of(store)
    )
    assert created.returncode == 0, created.stderr

    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    user = accounts.authenticate("ky-thuat", PASSWORD)
    token = accounts.account_for_token(created.stdout.split()[0])
    assert user is not None and (user.role, user.sites) == (Role.TECHNICIAN, frozenset({"hq"}))
    assert token is not None and (token.role, token.sites) == (Role.TECHNICIAN, frozenset({"hq"}))
    listed = table(gatescan(["user", "list"], db_of(store)).stdout)["ky-thuat"]
    assert listed["ROLE"] == "technician"
    browser = logged_in(app, "ky-thuat")
    assert browser.get("/api/v1/me").json() == {
        "name": "ky-thuat",
        "role": "technician",
        "language": None,
        "via": "session",
        "sites": ["hq"],
    }
    assert browser.get("/api/v1/entries").status_code == 403
    assert browser.get("/api/v1/devices").status_code == 200


def test_user_sites_changes_a_logged_in_user_s_sites_at_their_next_request(
    app: FastAPI, store: Store
) -> None:
    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    accounts.add_user("lan", Role.MANAGER, PASSWORD, sites=["hq"])
    browser = logged_in(app, "lan")
    assert browser.get("/api/v1/me").json()["sites"] == ["hq"]

    steps = [
        (["--site", "annex", "--site", "depot"], ["annex", "depot"]),
        (["--add", "hq"], ["annex", "depot", "hq"]),
        (["--remove", "depot", "--remove", "annex"], ["hq"]),
        (["--every-site"], None),
    ]
    for how, sites in steps:
        done = gatescan(["user", "sites", "lan", *how], db_of(store))
        assert done.returncode == 0, done.stderr
        assert browser.get("/api/v1/me").json()["sites"] == sites, how  # the same session

    changes = [r for r in AuditLog(store.engine).rows(action="account") if r.subject == "lan"]
    assert [(r.details["before"], r.details["sites"]) for r in reversed(changes)] == [
        (["hq"], ["annex", "depot"]),
        (["annex", "depot"], ["annex", "depot", "hq"]),
        (["annex", "depot", "hq"], ["hq"]),
        (["hq"], None),
    ]
    assert all(r.details["change"] == "user sites" and r.site_id == "" for r in changes)


def test_token_sites_changes_a_token_s_sites_at_its_next_request(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    token = Accounts(store.engine).create_token("feed", Role.VIEWER, sites=["hq"])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=headers).json()["sites"] == ["hq"]

    done = gatescan(["token", "sites", "feed", "--site", "annex"], db_of(store))

    assert done.returncode == 0, done.stderr
    assert client.get("/api/v1/me", headers=headers).json()["sites"] == ["annex"]
    assert table(gatescan(["token", "list"], db_of(store)).stdout)["feed"]["SITES"] == "annex"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["user", "sites", "admin", "--site", "hq"], 2, "holds no sites"),
        (["user", "sites", "lan", "--remove", "hq"], 2, "every site"),  # the last one
        (["user", "sites", "manager", "--add", "hq"], 2, "holds every site"),
        (["user", "sites", "lan", "--site", " hq"], 2, "bad site"),
        (["user", "sites", "nobody", "--site", "hq"], 3, "no user named 'nobody'"),
        (["token", "sites", "nobody", "--site", "hq"], 3, "no token named 'nobody'"),
    ],
    ids=["admin", "last-site", "add-to-every", "spaces", "no-user", "no-token"],
)
def test_user_sites_refuses_what_would_widen_or_make_no_sense(
    app: FastAPI, store: Store, args: list[str], code: int, message: str
) -> None:
    Accounts(store.engine, hasher=FAST_HASHER).add_user("lan", Role.MANAGER, PASSWORD, sites=["hq"])

    done = gatescan(args, db_of(store))

    assert (done.returncode, message in done.stderr) == (code, True), done.stderr
    assert Accounts(store.engine).user("lan").sites == frozenset({"hq"})  # type: ignore[union-attr]
    assert AuditLog(store.engine).rows(action="account") == []


def test_a_user_s_e_mail_is_set_at_add_changed_removed_and_listed(store: Store) -> None:
    added = gatescan(
        ["user", "add", "ql-hq", "--role", "manager", "--site", "hq", "--email", "a@example.vn"],
        db_of(store),
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert table(gatescan(["user", "list"], db_of(store)).stdout)["ql-hq"]["EMAIL"] == (
        "a@example.vn"
    )
    changed = gatescan(["user", "email", "ql-hq", "b@example.vn"], db_of(store))
    assert changed.returncode == 0, changed.stderr
    accounts = Accounts(store.engine, hasher=FAST_HASHER)
    assert accounts.alert_recipients() == {"b@example.vn": frozenset({"hq"})}
    bad = gatescan(["user", "email", "ql-hq", "b@example.vn\nBcc: x@evil.vn"], db_of(store))
    assert bad.returncode == 2 and "bad e-mail address" in bad.stderr
    assert gatescan(["user", "email", "nobody", "c@example.vn"], db_of(store)).returncode == 3
    assert gatescan(["user", "email", "ql-hq", "--none"], db_of(store)).returncode == 0
    assert accounts.alert_recipients() == {}
    rows = [r for r in AuditLog(store.engine).rows(action="account") if r.subject == "ql-hq"]
    assert [r.details.get("email") for r in rows][::-1] == ["a@example.vn", "b@example.vn", None]
