"""`gatescan agent` in setup mode, as a process: the replay camera shows an enrolment card, a real
HTTPS enrolment server (tests/support/enrolment_server.py) answers, the gate keeps its identity
and publishes to the site's real Mosquitto over TLS; refused cards leave it in setup mode with no
identity. The light is read from the mock pins' log (GATESCAN_FAULT_PIN_LOG)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from device.enrolment.identity import CA_FILE, GRANT_FILE, identity_dir
from device.indicator.pin_log import read_pin_log
from gatescan.testing.samples import cccd_payload, write_replay_folder
from protocol.enrolment import EnrolmentGrant
from server.site.certificates import new_authority, write_certificate
from server.site.installation import Installation
from server.store.database import Store
from tests.support.enrolment_server import Answer, site_enrolment_server, site_grant
from tests.support.tls_site import new_site, site_broker, site_collector, site_folder
from tests.support.waiting import wait_until

DEVICE = "gate-enrolled-1"
PASSWORD = "a-broker-password-for-the-gate"
TOKEN = "tok_" + "x" * 36
CARD = cccd_payload("079193012345", "Nguyễn Thị Thu Uyên", "05061993", "Nữ", "Huế", "21042021")
GREEN, RED = "GPIO17", "GPIO27"


@pytest.fixture(scope="module")
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder, gates={DEVICE: PASSWORD})


def grant(site: Installation) -> EnrolmentGrant:
    """A grant the site's broker takes: DEVICE is one of its users (the site fixture)."""
    return site_grant(site, DEVICE, PASSWORD)


class GateProcess:
    def __init__(self, root: Path, args: Sequence[str]) -> None:
        self.log_path = root / "agent.log"
        self.pins_path = root / "pins.log"
        env = {**os.environ, "GATESCAN_FAULT_PIN_LOG": str(self.pins_path)}
        for name in ("INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "GATESCAN_MQTT_PASSWORD"):
            env.pop(name, None)
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gatescan.cli", "agent", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lit(self, pin: str) -> int:
        return sum(
            1 for change in read_pin_log(self.pins_path) if change.pin == pin and change.state
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def replay(folder: Path, payloads: Sequence[bytes | None]) -> str:
    write_replay_folder(folder, payloads, frame_size=(640, 480), module_px=4)
    return f"replay:{folder}?hold=0.4&loop=true"


def test_a_gate_in_setup_mode_enrols_from_its_card_and_publishes_over_tls(
    site: Installation, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gate"
    with (
        site_broker(site) as broker,
        site_enrolment_server(site, {TOKEN: grant(site)}) as server,
        Store(tmp_path / "collector.db") as store,
    ):
        collector = site_collector(site, store)
        collector.start()
        source = replay(tmp_path / "replay", [server.code(TOKEN).encode(), None, CARD])
        gate = GateProcess(tmp_path, ["--data-dir", str(data_dir), "--source", source])
        try:
            assert collector.wait_until_subscribed(10), broker.log()
            grant_file = identity_dir(data_dir) / GRANT_FILE
            wait_until(grant_file.exists, 30, "the identity stored")
            stored_s = time.monotonic() - gate.started
            wait_until(lambda: store.count_entries() >= 1, 30, "the first entry at the collector")
            published_s = time.monotonic() - gate.started
        finally:
            code = gate.stop()
            collector.stop()
        log = gate.log()
        assert code == 0, log
        [entry] = list(store.entries())
        assert (entry.device_id, entry.subject_name) == (DEVICE, "Nguyễn Thị Thu Uyên")
        for name in (GRANT_FILE, CA_FILE):
            assert stat.S_IMODE((identity_dir(data_dir) / name).stat().st_mode) == 0o600
        assert "setup mode" in log and f"online at {site.broker_url}" in log
        # The card, shown again to the running gate (the replay loops), is no entry.
        assert "an enrolment card was shown to a running gate: refused, not recorded" in log
        assert TOKEN not in log
        assert TOKEN not in "".join(
            p.read_text(errors="replace") for p in data_dir.rglob("*") if p.is_file()
        )
        assert gate.lit(GREEN) >= 1  # the setup light, then the entry's
        enrolled = float(log.split("enrolled in ")[1].split(" s")[0])
        print(
            f"\nenrolment figures: card read -> identity stored {enrolled:.2f} s (gate's log); "
            f"process start -> identity on disk {stored_s:.2f} s; "
            f"-> first entry stored by the collector {published_s:.2f} s"
        )


@pytest.mark.parametrize("case", ["foreign_server", "used", "expired", "unknown_token", "broken"])
def test_a_refused_card_leaves_the_gate_in_setup_mode_with_no_identity(
    site: Installation, tmp_path: Path, case: str
) -> None:
    foreign = None
    if case == "foreign_server":
        foreign = tmp_path / "impostor-ca.crt"
        write_certificate(foreign, new_authority("impostor").certificate)
    tokens: dict[str, Answer] = {} if case in ("unknown_token", "broken") else {TOKEN: case}
    if case == "foreign_server":
        tokens = {TOKEN: grant(site)}
    data_dir = tmp_path / "gate"
    with site_enrolment_server(site, tokens, served_ca=foreign) as server:
        text = server.code(TOKEN)
        if case == "broken":
            text = text.replace("https", "http", 1)  # the server must be https://
        source = replay(tmp_path / "replay", [text.encode()])
        gate = GateProcess(tmp_path, ["--data-dir", str(data_dir), "--source", source])
        try:
            said = "enrolment card refused" if case == "broken" else f"enrolment refused: {case}"
            wait_until(lambda: said in gate.log(), 30, f"the refusal in the log ({case})")
            wait_until(lambda: gate.lit(RED) >= 1, 10, "the refused light (red)")
            assert gate.process.poll() is None, "the gate stays up, in setup mode"
        finally:
            code = gate.stop()
    log = gate.log()
    assert code == 0, log
    assert not (identity_dir(data_dir) / GRANT_FILE).exists()
    assert TOKEN not in log
    assert "Traceback" not in log
    if case in ("foreign_server", "broken"):
        assert server.requests == []  # the token never left the gate
    else:
        assert len(server.requests) == 1  # refused for good: not asked again for the same card


def test_the_enrolment_file_beside_the_config_enrols_the_gate(
    site: Installation, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gate"
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "gate.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n[camera]\ntype = "replay"\nfolder = "frames"\nloop = true\n'
    )
    write_replay_folder(folder / "frames", [None], frame_size=(320, 240))
    with site_enrolment_server(site, {TOKEN: grant(site)}) as server:
        (folder / "enrolment.txt").write_text(server.code(TOKEN) + "\n")
        gate = GateProcess(tmp_path, ["--config", str(config)])
        try:
            wait_until((identity_dir(data_dir) / GRANT_FILE).exists, 30, "the identity stored")
            wait_until(lambda: f"connecting to {site.broker_url}" in gate.log(), 20, "the agent")
        finally:
            code = gate.stop()
    assert code == 0, gate.log()
    assert "enrolment card read (file enrolment.txt)" in gate.log()


def test_a_busy_server_is_asked_again_with_the_same_card_until_it_grants(
    site: Installation, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gate"
    with site_enrolment_server(site, {TOKEN: "busy"}) as server:
        source = replay(tmp_path / "replay", [server.code(TOKEN).encode()])
        gate = GateProcess(tmp_path, ["--data-dir", str(data_dir), "--source", source])
        try:
            wait_until(lambda: "enrolment not done: busy" in gate.log(), 30, "the busy answer")
            assert not (identity_dir(data_dir) / GRANT_FILE).exists()
            server.tokens[TOKEN] = grant(site)  # the broker is back: the server can grant
            wait_until((identity_dir(data_dir) / GRANT_FILE).exists, 30, "the identity stored")
        finally:
            code = gate.stop()
    assert code == 0, gate.log()
    assert 2 <= len(server.requests) <= 3  # asked again after the backoff, not on every frame
    assert gate.lit(RED) >= 1  # the retry light's red blink
