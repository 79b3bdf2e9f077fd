"""`gatescan gate ...`, `site list` and `--config` on the other server commands, as an admin
runs them (a real site init'd folder and SQLite), without a broker: bad input is a clear error
and an exit code, never a traceback; a broker that cannot be told is exit 1 with the registry's
change kept. The command's main runs in this process (tests/support/cli.py: run_gatescan_here),
but in the first test and `site init`, a real process."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from protocol.enrolment import parse_enrolment_code
from protocol.messages import Status
from server.clock import utc_now
from server.store import gate_commands
from server.store.database import Store
from server.store.gate_commands import GateCommands
from tests.support.cli import run_gatescan, run_gatescan_here


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    done = run_gatescan(["site", "init", str(folder), "--host", "broker.lan",
                         "--mqtt-port", "18999"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder / "server.toml"


def gatescan(config: Path, *args: str, process: bool = False) -> tuple[int, str, str]:
    """The command's main in this process; `process`: in its own, as an admin runs it."""
    done = (run_gatescan if process else run_gatescan_here)([*args, "--config", str(config)])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_gate_add_writes_a_card_for_the_installation_and_lists_the_gate(
    config: Path, tmp_path: Path
) -> None:
    place = ["--location", "Cổng chính", "--direction", "out"]
    code, out, err = gatescan(
        config,
        "gate",
        "add",
        "gate-1",
        "--site",
        "hq",
        *place,
        "--qr",
        str(tmp_path / "c.png"),
        process=True,
    )
    assert code == 0, err
    card = parse_enrolment_code(re.search(r"code: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert card.server == "https://broker.lan:8443"  # site init's --host and --enrol-port
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    assert "valid until" in out
    code, out, _ = gatescan(config, "gate", "list")
    assert re.search(r"^gate-1\s+hq\s+Cổng chính\s+out\s+pending\s", out, re.M), out
    code, out, _ = gatescan(config, "site", "list")
    assert re.search(r"^hq\s+1\s+1\s+0\s+0\s+0$", out, re.M), out


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["gate", "add", "bad/id", "--site", "hq"], 2, "'bad/id' is not a gate id"),
        (["gate", "add", "collector", "--site", "hq"], 2, "the server's own broker user"),
        (["gate", "add", "gate-2", "--site", " "], 2, "--site is empty"),
        (["gate", "add", "gate-2", "--site", "a\x1b[31m"], 2, "printable characters"),
        (["gate", "add", "gate-2", "--site", "hq", "--token-hours", "0"], 2, "--token-hours"),
        (["gate", "revoke", "gate-9"], 3, "no gate 'gate-9' is registered"),
        (["gate", "retire", "gate-9"], 3, "no gate 'gate-9' is registered"),
    ],
    ids=["id", "collector", "empty-site", "control", "hours", "revoke-unknown", "retire-unknown"],
)
def test_bad_input_is_a_clear_error(
    config: Path, tmp_path: Path, args: list[str], exit_code: int, message: str
) -> None:
    if args[1] == "add":
        args = [*args, "--qr", str(tmp_path / "c.png")]
    else:  # a registry to look in
        assert gatescan(config, "gate", "add", "gate-1", "--site", "hq",
                        "--qr", str(tmp_path / "first.png"))[0] == 0  # fmt: skip
    code, _, err = gatescan(config, *args)
    assert (code, message in err) == (exit_code, True), err
    if args[1] == "add":
        assert not (tmp_path / "c.png").exists()


def test_a_gate_id_is_registered_once(config: Path, tmp_path: Path) -> None:
    qr = ["--qr", str(tmp_path / "c.png")]
    assert gatescan(config, "gate", "add", "gate-1", "--site", "hq", *qr)[0] == 0
    code, _, err = gatescan(config, "gate", "add", "gate-1", "--site", "branch", *qr)
    assert code == 2 and "registered already" in err and "gate replace" in err


def test_revoke_without_a_broker_keeps_the_change_and_says_to_run_it_again(
    config: Path, tmp_path: Path
) -> None:
    assert gatescan(config, "gate", "add", "gate-1", "--site", "hq",
                    "--qr", str(tmp_path / "c.png"))[0] == 0  # fmt: skip

    code, _, err = gatescan(config, "gate", "revoke", "gate-1")  # no broker on 18999

    assert code == 1 and "the broker was not told" in err and "again" in err
    assert re.search(r"^gate-1 .* revoked ", gatescan(config, "gate", "list")[1], re.M)


def test_user_token_and_entries_export_take_the_config_s_database(config: Path) -> None:
    done = run_gatescan(["user", "add", "an", "--role", "admin", "--config", str(config)],
                        stdin="a long and unusual passphrase 7\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (config.parent / "gatescan.db").exists()
    code, out, _ = gatescan(config, "user", "list")
    assert code == 0 and re.search(r"^an\s+admin", out, re.M), out
    assert gatescan(config, "entries", "export")[0] == 0
    alone = run_gatescan(["entries", "export"])
    assert alone.returncode == 2 and "give --db, or --config" in alone.stderr


def test_the_registry_commands_audit_rows_name_their_site(config: Path, tmp_path: Path) -> None:
    """Each row of a change to one site is that site's (its managers read it on the audit
    page): gate add, replace, revoke, retire, site rules, list add, key rotate, pass issue."""
    from server.store.audit import AuditLog
    from server.store.database import Store

    qr = str(tmp_path / "c.png")
    assert gatescan(config, "gate", "add", "gate-1", "--site", "hq", "--qr", qr)[0] == 0
    assert gatescan(config, "gate", "replace", "gate-1", "--qr", qr)[0] == 1  # no broker
    assert gatescan(config, "gate", "revoke", "gate-1")[0] == 1  # no broker: the change is kept
    assert gatescan(config, "gate", "retire", "gate-1")[0] == 1
    assert gatescan(config, "site", "rules", "--site", "annex", "--anti-passback", "hard")[0] == 0
    assert gatescan(config, "list", "add", "block", "--site", "depot", "079190000001")[0] == 0
    assert gatescan(config, "key", "rotate", "--site", "hq")[0] == 0
    pass_qr = str(tmp_path / "pass.png")
    issued = gatescan(config, "pass", "issue", "Lan", "--site", "hq", "--valid-until",
                      "2099-01-01T00:00:00+07:00", "--qr", pass_qr)  # fmt: skip
    assert issued[0] == 0, issued[2]

    with Store(config.parent / "gatescan.db") as store:
        rows = AuditLog(store.engine).rows()
    changes = [(row.details["change"], row.site_id) for row in reversed(rows)]
    assert changes == [
        ("gate add", "hq"),
        ("gate replace", "hq"),
        ("gate revoke", "hq"),
        ("gate retire", "hq"),
        ("site rules", "annex"),
        ("list add", "depot"),
        ("key rotate", "hq"),
        ("pass issue", "hq"),
    ]


def test_gate_command_says_no_answer_when_the_gate_stays_silent(
    store: Store, store_url: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older gate refuses a newer action as malformed without answering: sent, then silent.
    The wait ends with `no_answer` and exit 1 once the bound is past (60 s; 1 s here)."""
    monkeypatch.setattr(gate_commands, "ANSWER_WITHIN", timedelta(seconds=1))
    store.record_status("gate-old", Status(state="online", ts=utc_now(), site_id="hq"), utc_now())
    rows, stop = GateCommands(store.engine), threading.Event()

    def collector() -> None:  # claims (sends) what is pending; the gate never answers
        while not stop.wait(0.05):
            rows.claim_pending(utc_now())

    sender = threading.Thread(target=collector, daemon=True)
    sender.start()
    try:
        done = run_gatescan_here(
            ["gate", "command", "gate-old", "identify", "--wait", "20", "--db", str(store_url)]
        )
    finally:
        stop.set()
        sender.join(timeout=5)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sent: " in done.stdout
    assert (
        "no_answer: the gate did not answer: it may be offline or older than this action"
        in done.stdout
    )
    assert "no final answer within" not in done.stderr
