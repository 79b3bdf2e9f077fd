"""The `gatescan` command as a technician and a manager use it: real processes, real files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatescan.cli import foreign_packages
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import cccd_payload, render_code, write_replay_folder
from protocol.messages import Event
from server.store.database import Store
from tests.support.cli import run_gatescan
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until

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
    # A self check-in poster (issue 18) whose URL is on this machine: the dashboard's address.
    dashboard = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/", out)[1]  # type: ignore[index]
    poster_url = re.search(r"self check-in poster: (\S+) \(its QR opens (\S+)\)", out)
    assert poster_url and poster_url[2].startswith(f"{dashboard}/c/loc-"), out
    assert poster_url[2] in Path(poster_url[1]).read_text(encoding="utf-8")


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


# --- the demo stops when its broker died first ------------------------------------------------

DEMO_STOPS_WITHIN_S = 20.0  # a clean stop takes 2-3 s; the bug it guards against hung for ever
# While starting, a stop took 13-15 s before the demo's start-up heeded it (it waited up to 10 s
# for the site's policy to reach a broker gone); 3-4 s since.
STARTING_STOPS_WITHIN_S = 10.0


def _children(pid: int) -> dict[int, str]:
    """The process's children now running: pid -> command name (Linux's /proc)."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    found = {}
    for child in listed:
        try:
            found[int(child)] = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue  # ended meanwhile
    return found


def _start_demo(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gatescan.cli", "demo", "--data-dir", str(tmp_path / "site")],
        cwd=PROJECT_ROOT,
        stdout=log.open("w", encoding="utf-8"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: nothing of it outlives the test (killpg)
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, log


def _kill_broker(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the demo's Mosquitto, as `timeout make demo` or a closed terminal sends it to
    the whole group (where the broker, quicker to go, goes first); back once it has ended."""
    broker = wait_until(
        lambda: [pid for pid, name in _children(process.pid).items() if name == "mosquitto"],
        60,
        "the demo's broker",
    )[0]
    os.kill(broker, signal.SIGTERM)
    wait_until(
        lambda: (
            broker not in _children(process.pid)
            or Path(f"/proc/{broker}/stat").read_text().split(") ")[1].startswith("Z")
        ),
        10,
        "the broker to end",
    )


def _stopped_within(process: subprocess.Popen[str], log: Path, bound_s: float) -> float:
    """SIGTERM the demo; the seconds it took to end (the test fails past `bound_s`)."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=bound_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(
            f"the demo still ran {bound_s:g} s after SIGTERM:\n{log.read_text()[-3000:]}"
        ) from None
    return time.monotonic() - sent


@pytest.fixture
def demo_group() -> Iterator[list[subprocess.Popen[str]]]:
    """The demo processes a test started: their groups killed at the end, whatever happened."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_demo_stops_on_sigterm_after_its_broker_died_while_it_ran(
    tmp_path: Path, demo_group: list[subprocess.Popen[str]]
) -> None:
    process, log = _start_demo(tmp_path)
    demo_group.append(process)
    wait_until(lambda: "journaled" in log.read_text(), 90, "the demo's first scan")
    _kill_broker(process)
    wait_until(lambda: "unreachable" in log.read_text(), 30, "the demo retrying the broker")

    took = _stopped_within(process, log, DEMO_STOPS_WITHIN_S)

    out = log.read_text()
    assert process.returncode == 0, out[-3000:]
    assert "Stopped. The collector's database holds" in out, out[-3000:]
    assert took < DEMO_STOPS_WITHIN_S


def test_the_demo_stops_on_sigterm_while_starting_with_its_broker_gone(
    tmp_path: Path, demo_group: list[subprocess.Popen[str]]
) -> None:
    process, log = _start_demo(tmp_path)
    demo_group.append(process)
    # As soon as the broker is up (its banner): the collector, then the site's policy, wait on it
    wait_until(lambda: "gatescan demo: broker" in log.read_text(), 90, "the demo's banner")
    _kill_broker(process)

    took = _stopped_within(process, log, STARTING_STOPS_WITHIN_S)

    out = log.read_text()
    assert process.returncode == 0, out[-3000:]
    assert "Stopped. The collector's database holds" in out, out[-3000:]
    assert took < STARTING_STOPS_WITHIN_S
