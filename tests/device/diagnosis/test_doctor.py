"""`gatescan doctor`'s checks (device/diagnosis/) on real parts: the site's own Mosquitto over
TLS as `gatescan site init` writes it (tests/support/tls_site.py: its CA and a gate user), the
enrolled identity in a data dir, the replay camera, pyzbar/libzbar and zxing-cpp, a journal on
disk; gpiozero's MockFactory for the pins. Each case has the finding a technician would act on."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from device.diagnosis.doctor import CHECKS, Surroundings, diagnose, exit_status
from device.diagnosis.findings import Finding, Level
from device.enrolment.identity import store_identity
from device.journal.journal import Journal
from gatescan.testing.broker import free_port
from gatescan.testing.samples import write_replay_folder
from protocol.enrolment import EnrolmentGrant
from protocol.verdicts import Direction
from server.site.certificates import issue_server_certificate, new_authority
from server.site.installation import Installation
from tests.support.tls_site import SiteBroker, new_site, site_broker, site_folder, tls_port

GATE = "gate-a"
GATE_PASSWORD = "a-secret-for-tls-doctor"


@pytest.fixture(scope="module")
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder, gates={GATE: GATE_PASSWORD})


@pytest.fixture(scope="module")
def broker(site: Installation) -> Iterator[SiteBroker]:
    with site_broker(site) as running:
        yield running


@pytest.fixture
def gate_dir(tmp_path: Path) -> Path:
    """A gate's config folder: a replay camera's frames and the config, its data dir beside."""
    write_replay_folder(tmp_path / "frames", [None], frame_size=(320, 240))
    (tmp_path / "data").mkdir()
    return tmp_path


def write_config(folder: Path, extra: str = "") -> Path:
    config = folder / "gate.toml"
    config.write_text(
        'data_dir = "data"\n[camera]\ntype = "replay"\nfolder = "frames"\nloop = true\n' + extra,
        encoding="utf-8",
    )
    return config


def enrol(folder: Path, site: Installation, **changes: str) -> None:
    grant = {
        "device_id": GATE,
        "site_id": "hq",
        "direction": Direction.IN,
        "broker_url": site.broker_url,
        "username": GATE,
        "password": GATE_PASSWORD,
        "ca_pem": site.files.ca_file.read_text(encoding="utf-8"),
    }
    store_identity(folder / "data", EnrolmentGrant.model_validate({**grant, **changes}))


def surroundings(folder: Path, pins: MockFactory | None = None) -> Surroundings:
    flag = folder / "synchronized"
    flag.touch()  # systemd-timesyncd's flag file: the clock is synchronised
    return Surroundings(
        pin_factory=pins or MockFactory(),
        on_a_pi=lambda: True,
        timesyncd_flag=flag,
        kernel_state=lambda: None,
        env={},
    )


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    assert [finding.name for finding in findings] == list(CHECKS)
    return {finding.name: finding for finding in findings}


def levels(findings: list[Finding]) -> dict[str, str]:
    return {finding.name: finding.level.value for finding in findings}


def test_an_enrolled_gate_whose_parts_all_work(
    gate_dir: Path, site: Installation, broker: SiteBroker
) -> None:
    enrol(gate_dir, site)
    Journal(gate_dir / "data").close()  # the agent ran here once

    findings = diagnose(write_config(gate_dir), None, surroundings(gate_dir))

    assert levels(findings) == dict.fromkeys(CHECKS, "OK"), "\n".join(f.line() for f in findings)
    found = by_name(findings)
    assert "enrolled as gate-a of site hq" in found["identity"].found
    assert "verifies with the enrolled identity's CA" in found["tls"].found
    assert f"the broker accepted {GATE}" in found["mqtt"].found
    assert "Success" in found["mqtt"].found
    assert "fps, 320x240 (replay)" in found["camera"].found
    assert "zbar" in found["decoders"].found
    assert "green 17, red 27, buzzer 22" in found["gpio"].found
    assert "0 event(s) in the outbox" in found["journal"].found
    assert exit_status(findings) == 0


def test_a_broker_certificate_from_another_ca_is_the_wrong_ca(
    gate_dir: Path, site: Installation, broker: SiteBroker
) -> None:
    other = new_authority("another installation")
    enrol(
        gate_dir, site, ca_pem=other.certificate.public_bytes(serialization.Encoding.PEM).decode()
    )

    found = by_name(diagnose(write_config(gate_dir), None, surroundings(gate_dir)))

    assert found["tcp"].level is Level.OK
    assert found["tls"].level is Level.FAIL
    assert "wrong CA" in found["tls"].found
    assert "enrol the gate again" in found["tls"].fix
    assert found["mqtt"].level is Level.FAIL and "not checked" in found["mqtt"].found


def test_a_password_the_broker_refuses_is_said_in_words(
    gate_dir: Path, site: Installation, broker: SiteBroker
) -> None:
    enrol(gate_dir, site, password="not-the-password-at-all")

    findings = diagnose(write_config(gate_dir), None, surroundings(gate_dir))
    found = by_name(findings)

    assert found["tls"].level is Level.OK
    assert found["mqtt"].level is Level.FAIL
    # Mosquitto 2.0 with its dynamic security plugin answers a wrong password "not
    # authorized", as it answers a disabled (revoked) client: the fix names both.
    assert "the broker refused gate-a: Not authorized (CONNACK 0x87)" in found["mqtt"].found
    assert "password" in found["mqtt"].fix and "enrol it again" in found["mqtt"].fix
    assert exit_status(findings) == 1


def test_a_port_where_nothing_listens_fails_at_once(gate_dir: Path, site: Installation) -> None:
    enrol(gate_dir, site, broker_url=f"mqtts://localhost:{free_port()}")

    started = time.monotonic()
    found = by_name(diagnose(write_config(gate_dir), None, surroundings(gate_dir)))

    assert time.monotonic() - started < 10
    assert found["tcp"].level is Level.FAIL
    assert "refused the connection: nothing listens" in found["tcp"].found
    assert [found[name].level for name in ("tls", "mqtt")] == [Level.FAIL, Level.FAIL]


def test_a_port_that_accepts_and_never_answers_is_bounded(
    gate_dir: Path, site: Installation
) -> None:
    """A listener that takes connections and says nothing (a hung broker, a proxy): the TLS
    handshake gives up after its time bound, and the doctor ends."""
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel completes TCP's handshake
    try:
        enrol(gate_dir, site, broker_url=f"mqtts://localhost:{silent.getsockname()[1]}")
        started = time.monotonic()
        found = by_name(diagnose(write_config(gate_dir), None, surroundings(gate_dir)))
        elapsed = time.monotonic() - started
    finally:
        silent.close()

    assert elapsed < 15
    assert found["tcp"].level is Level.OK
    assert found["tls"].level is Level.FAIL
    assert "timed out" in found["tls"].found
    assert found["mqtt"].found == "not checked: no TLS connection"


def test_a_typo_in_the_config_is_named_and_the_broker_still_checked(
    gate_dir: Path, site: Installation, broker: SiteBroker
) -> None:
    enrol(gate_dir, site)
    config = write_config(gate_dir, '[decoder]\nbakend = "pyzbar"\n')

    findings = diagnose(config, None, surroundings(gate_dir))
    found = by_name(findings)

    assert found["config"].level is Level.FAIL
    assert "decoder.bakend" in found["config"].found
    assert "did you mean 'backend'" in found["config"].found
    # Who the gate is and its broker come from the identity: those are checked all the same.
    assert [found[name].level for name in ("identity", "dns", "tcp", "tls", "mqtt")] == [
        Level.OK
    ] * 5
    for name in ("camera", "decoders", "gpio"):
        assert found[name].found == "not checked: the config does not load"
    assert exit_status(findings) == 1


def test_a_gate_without_identity_or_broker_waits_for_its_card(gate_dir: Path) -> None:
    findings = diagnose(write_config(gate_dir), None, surroundings(gate_dir))
    found = by_name(findings)

    assert found["identity"].level is Level.FAIL
    assert "not enrolled" in found["identity"].found and "setup mode" in found["identity"].found
    assert "enrolment card" in found["identity"].fix
    assert all(found[name].found == "not checked: no broker (setup mode)" for name in CHECKS[2:6])
    assert exit_status(findings) == 1


def test_a_name_the_certificate_does_not_hold(
    gate_dir: Path, site: Installation, broker: SiteBroker
) -> None:
    """Not enrolled: the config's broker, by an address its certificate lacks (it names
    localhost, 127.0.0.1 and ::1; the TLS listener is on every interface)."""
    (gate_dir / "password").write_text(GATE_PASSWORD)
    config = write_config(
        gate_dir,
        f'[mqtt]\nbroker = "mqtts://127.0.0.2:{tls_port(site)}"\nusername = "{GATE}"\n'
        f'ca_file = "{site.files.ca_file}"\npassword_file = "password"\n',
    )

    found = by_name(diagnose(config, None, surroundings(gate_dir)))

    assert found["identity"].level is Level.OK
    assert found["tls"].level is Level.FAIL
    assert "does not name 127.0.0.2; it names localhost, 127.0.0.1, ::1" in found["tls"].found


class ExpiredTlsServer:
    """A TLS server (Python's ssl, a real handshake) showing a certificate that has expired."""

    def __init__(self, folder: Path) -> None:
        years_ago = datetime.now(UTC) - timedelta(days=365 * 6)
        self.authority = new_authority("old installation", now=years_ago)
        issued = issue_server_certificate(self.authority, ["localhost"], now=years_ago)
        cert, key = folder / "expired.crt", folder / "expired.key"
        cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            issued.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.ca_file = folder / "old-ca.crt"
        self.ca_file.write_bytes(
            self.authority.certificate.public_bytes(serialization.Encoding.PEM)
        )
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                continue  # the client refused the certificate: what is tested

    def close(self) -> None:
        self.listener.close()


def test_an_expired_broker_certificate(gate_dir: Path) -> None:
    server = ExpiredTlsServer(gate_dir)
    try:
        config = write_config(
            gate_dir,
            f'[mqtt]\nbroker = "mqtts://localhost:{server.port}"\nca_file = "{server.ca_file}"\n',
        )
        found = by_name(diagnose(config, None, surroundings(gate_dir)))
    finally:
        server.close()

    assert found["tcp"].level is Level.OK
    assert found["tls"].level is Level.FAIL
    assert "the broker's certificate has expired" in found["tls"].found
    assert "renew the broker's certificate" in found["tls"].fix


def test_a_pin_another_process_holds(gate_dir: Path) -> None:
    pins = MockFactory()
    other = LED(27, pin_factory=pins)  # as another program holding the red LED's pin
    try:
        found = by_name(diagnose(write_config(gate_dir), None, surroundings(gate_dir, pins)))
    finally:
        other.close()

    assert found["gpio"].level is Level.FAIL
    assert found["gpio"].found.startswith("pin 27 (red) cannot be claimed")
    assert "another process holds it" in found["gpio"].fix


def test_an_unsynchronised_clock_and_a_camera_without_frames(gate_dir: Path) -> None:
    config = write_config(gate_dir)
    for image in (gate_dir / "frames").iterdir():
        image.unlink()
    around = Surroundings(
        pin_factory=MockFactory(),
        on_a_pi=lambda: True,
        timesyncd_flag=gate_dir / "no-flag",
        kernel_state=lambda: 5,  # TIME_ERROR: no NTP daemon disciplines the clock
        env={},
    )

    found = by_name(diagnose(config, None, around))

    assert found["clock"].level is Level.WARN
    assert "not synchronised" in found["clock"].found
    assert found["camera"].level is Level.FAIL
    assert "check camera.folder" in found["camera"].fix
