"""The `gatescan` command as a technician and a manager use it: real processes, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatescan.cli import foreign_packages
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import cccd_payload, render_code, write_replay_folder
from protocol.messages import Event
from server.store.database import Store
from tests.support.cli import run_gatescan

CARD = cccd_payload("079193012345", "Nguyễn Thị Thu Uyên", "05061993", "Nữ", "Huế", "21042021")


def gatescan(
    args: Sequence[str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_gatescan(args, cwd, timeout=timeout)


def test_agent_with_a_mistyped_config_says_what_to_fix_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text('[camera]\ntype = "picamera2"\nfsp = 30\n[policy]\nmode = "logs"\n')
    result = gatescan(["agent", "--config", str(config)], tmp_path)
    assert result.returncode == 2
    assert "camera.fsp: unknown key; did you mean 'fps'?" in result.stderr
    assert "policy.mode" in result.stderr and "did you mean 'log'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_agent_with_a_bad_source_flag_names_the_accepted_forms(tmp_path: Path) -> None:
    result = gatescan(["agent", "--source", "webcam"], tmp_path)
    assert result.returncode == 2
    assert "--source" in result.stderr and "replay:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("GATESCAN_AGENT_FAILPOINTS", "agent.drop_after_lite=drop"), ("GATESCAN_FAULT_CLOCK", "late")],
)
def test_agent_with_a_mistyped_fault_variable_names_it_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = gatescan(["agent", "--source", f"replay:{tmp_path}"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("gatescan agent: cannot start: ")
    assert (
        f"cannot start: {variable}: " in result.stderr
        and repr(value.split("=")[0]) in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_decode_prints_exact_bytes_and_text_per_file(tmp_path: Path) -> None:
    import cv2

    image = tmp_path / "card.png"
    cv2.imwrite(str(image), render_code(CARD, frame_size=(640, 480)))
    result = gatescan(["decode", str(image), str(tmp_path / "missing.png")], tmp_path)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["codes"][0]["text"] == CARD.decode("utf-8")
    assert lines[0]["codes"][0]["credential_type"] == "cccd"
    assert "error" in lines[1]
    assert result.returncode != 0  # one file could not be read


def test_entries_export_writes_stored_events_as_json_lines(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    with Store(f"sqlite:///{db}") as store:
        store.add_events([_event(1, "Trần Văn Đức"), _event(2, "Lý Ơn")], datetime.now(UTC))
    result = gatescan(["entries", "export", "--db", str(db), "--format", "jsonl"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["subject_name"] for row in rows] == ["Trần Văn Đức", "Lý Ơn"]
    assert {"event_id", "seq", "boot_id", "code_sha256", "received_at"} <= set(rows[0])


def test_agent_runs_without_a_config_file_from_flags_alone(
    broker: LocalBroker, tmp_path: Path
) -> None:
    from server.collector.service import Collector

    write_replay_folder(tmp_path / "replay", [CARD])
    store = Store(tmp_path / "collector.db")
    collector = Collector(broker_url=broker.url, store=store, client_id="cli-test")
    collector.start()
    data_dir = tmp_path / "gate"
    agent = subprocess.Popen(
        [sys.executable, "-m", "gatescan.cli", "agent", "--source", f"replay:{tmp_path / 'replay'}",
         "--broker", broker.url, "--device-id", "gate-flags", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while store.count_entries() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        agent.send_signal(signal.SIGTERM)
        output = agent.communicate(timeout=20)[0]
        collector.stop()
    assert agent.returncode == 0, output
    [entry] = list(store.entries())
    assert entry.device_id == "gate-flags"
    assert entry.subject_name == "Nguyễn Thị Thu Uyên"
    assert (data_dir / "journal").is_dir()


def test_demo_runs_a_whole_site_and_says_where_the_data_is(tmp_path: Path) -> None:
    result = gatescan(["demo", "--seconds", "7", "--data-dir", "site"], tmp_path, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "GRANTED" in out  # the entrance, in access mode
    assert "Nguyễn Thị Thu Uyên" in out
    assert "[vào]" in out and "[ra]" in out  # each line says which gate
    assert "collector database:" in out and "gate journals:" in out
    assert "/pass/#v1." in out  # a phone pass's page
    holds = int(out.split("database holds ")[1].split(" entries")[0])
    assert holds >= 2
    assert (tmp_path / "site" / "collector.db").exists()


def _event(seq: int, name: str) -> Event:
    return Event(
        event_id=f"event-{seq:04d}",
        device_id="gate-1",
        seq=seq,
        boot_id="boot-1",
        ts=datetime(2026, 11, 26, 8, 0, seq, tzinfo=UTC),
        clock_synced=True,
        direction="in",
        status="recorded",
        reason="ok",
        credential_type="cccd",
        subject_id=f"07920301234{seq}",
        subject_name=name,
        code_sha256="ab" * 32,
    )


def test_its_own_packages_are_the_ones_it_imports() -> None:
    assert foreign_packages() == []


def test_a_folder_named_like_one_of_its_packages_is_refused_saying_where_it_is(
    tmp_path: Path,
) -> None:
    # `python -m` puts the working directory first on the path: a stray server/ there would
    # otherwise be imported in place of gatescan's own (docs/architecture.md, the house).
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "__init__.py").write_text("")

    result = gatescan(["entries", "export", "--db", "x.db"], tmp_path)

    assert result.returncode == 1
    assert f"'server' it imports is {tmp_path / 'server' / '__init__.py'}" in result.stderr
    assert "Traceback" not in result.stderr
