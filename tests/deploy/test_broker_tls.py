"""The site's broker over TLS, on the real Mosquitto 2.0.11 run from the config `gatescan site
init` writes (`mosquitto -c DIR/mosquitto.conf`, unchanged but for the control cases), with the
CA and certificates it makes, real paho clients, the gate's Uplink and the Collector.

TLS below 1.2: this machine's OpenSSL 3.0 can still speak TLS 1.0 and 1.1, but only at security
level 0 (its default level refuses the SHA-1 signatures those versions need, on the client's side
and on the broker's). So the client willing to speak them sets `@SECLEVEL=0`, and the control
broker that lets it in sets `tls_version tlsv1.1` and `ciphers DEFAULT:@SECLEVEL=0`. That the
generated broker refuses the same client also with `ciphers DEFAULT:@SECLEVEL=0` added shows that
its `tls_version tlsv1.2` is what refuses it. (Mosquitto 2.0's tls_version is the lowest version a
listener accepts: with tlsv1.1 it still refuses TLS 1.0.)
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.journal.journal import Journal
from device.uplink.link import Uplink
from gatescan.testing.samples import sample_draft
from protocol.broker_tls import BrokerTls, client_tls_context
from protocol.messages import parse_message
from protocol.topics import Topic
from server.broker_admin.dynsec import BrokerAdmin
from server.collector.commands import door_releaser
from server.collector.service import Collector
from server.site.certificates import new_authority, write_certificate
from server.site.installation import Installation
from server.store.database import Store
from tests.support import waiting
from tests.support.paths import PROJECT_ROOT
from tests.support.tls_site import (
    SiteBroker,
    admin_login,
    collector_password,
    loopback_port,
    new_site,
    site_broker,
    site_collector,
    site_folder,
    tls_port,
)

GATE = "gate-a"
GATE_PASSWORD = "a-secret-for-tls"
TIMEOUT = 10.0


@pytest.fixture
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder, gates={GATE: GATE_PASSWORD})


@pytest.fixture
def broker(site: Installation) -> Iterator[SiteBroker]:
    with site_broker(site) as running:
        yield running


class TlsClient:
    """A bare paho MQTT v5 client: connects, records the CONNACK or the disconnection."""

    def __init__(self, username: str, password: str, tls: ssl.SSLContext | None) -> None:
        self.connack: ReasonCode | None = None
        self.answered = threading.Event()
        self.disconnected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=username, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.disconnected.set()

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connack = reason
        self.answered.set()

    def connect(self, host: str, port: int) -> TlsClient:
        self.client.connect(host, port)
        self.client.loop_start()
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def site_tls(site: Installation) -> BrokerTls:
    return BrokerTls(ca_file=site.files.ca_file)


def test_the_generated_config_runs_as_written_and_listens_only_where_it_says(
    site: Installation, broker: SiteBroker
) -> None:
    opened = {int(port) for port in re.findall(r"listen socket on port (\d+)", broker.log())}
    conf = site.files.conf.read_text(encoding="utf-8")

    # Never a default listener on 1883: a listener setting above the first `listener` line
    # (use_username_as_clientid) would open one on every interface, in clear text.
    assert opened == {tls_port(site), loopback_port(site)}, broker.log()
    assert "tls_version tlsv1.2" in conf
    assert f"listener {loopback_port(site)} 127.0.0.1" in conf.splitlines()
    assert conf.count("use_username_as_clientid true") == 2  # one per listener


def test_a_gate_and_the_collector_over_tls_deliver_an_event_end_to_end(
    site: Installation, broker: SiteBroker, tmp_path: Path
) -> None:
    with Store(tmp_path / "collector.db") as store:
        collector = site_collector(site, store)
        collector.start()
        try:
            assert collector.wait_until_subscribed(TIMEOUT), broker.log()
            with Journal(tmp_path / GATE) as journal:
                event = journal.record(sample_draft(device_id=GATE))
                uplink = Uplink(
                    device_id=GATE,
                    broker_url=site.broker_url,
                    journal=journal,
                    version="test",
                    boot_id="boot-1",
                    resend_after=0.5,
                    username=GATE,
                    password=GATE_PASSWORD,
                    tls=site_tls(site),
                )
                uplink.start()
                try:
                    waiting.wait_until(
                        lambda: journal.outbox_depth() == 0, TIMEOUT, "the collector's ack"
                    )
                finally:
                    uplink.stop()
        finally:
            collector.stop()
        assert [entry.event_id for entry in store.entries()] == [event.event_id]


@pytest.mark.parametrize("command", ["collector", "server"])
def test_the_server_commands_run_on_the_generated_server_toml(
    site: Installation, broker: SiteBroker, tmp_path: Path, command: str
) -> None:
    """`gatescan collector|server --config DIR/server.toml` as a process: the mqtts:// URL, the CA
    file, the password file (and the dashboard's address) come from the file; a flag (--db)
    still beats it."""
    db = tmp_path / "cli.db"
    command_line = [sys.executable, "-m", "gatescan.cli", command,
                    "--config", str(site.server_config), "--db", str(db)]  # fmt: skip
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GATESCAN_MQTT_PASSWORD", "CREDENTIALS_DIRECTORY")
    }
    process = subprocess.Popen(
        command_line, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        with Journal(tmp_path / GATE) as journal:
            event = journal.record(sample_draft(device_id=GATE))
            uplink = Uplink(
                device_id=GATE, broker_url=site.broker_url, journal=journal, version="test",
                boot_id="boot-1", resend_after=0.5, username=GATE, password=GATE_PASSWORD,
                tls=site_tls(site),
            )  # fmt: skip
            uplink.start()
            try:
                waiting.wait_until(lambda: journal.outbox_depth() == 0, 30, "the collector's ack")
            finally:
                uplink.stop()
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert process.returncode == 0, output
    with Store(db) as stored:
        assert [entry.event_id for entry in stored.entries()] == [event.event_id]
    if command == "server":
        listen = tomllib.loads(site.server_config.read_text())["listen"]
        assert f"gatescan dashboard on http://{listen}/" in output


def test_a_client_trusting_another_ca_refuses_the_broker(
    site: Installation, broker: SiteBroker, tmp_path: Path
) -> None:
    other = new_authority("someone else's CA")
    write_certificate(tmp_path / "other-ca.crt", other.certificate)
    client = TlsClient(
        GATE, GATE_PASSWORD, client_tls_context(BrokerTls(ca_file=tmp_path / "other-ca.crt"))
    )

    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        client.connect("localhost", tls_port(site))


def test_a_gate_and_the_collector_trusting_another_ca_say_why_they_cannot_connect(
    site: Installation, broker: SiteBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not "broker unreachable": a technician with the wrong ca.crt is told to check it."""
    other = new_authority("someone else's CA")
    write_certificate(tmp_path / "other-ca.crt", other.certificate)
    wrong = BrokerTls(ca_file=tmp_path / "other-ca.crt")
    caplog.set_level("WARNING")
    with Journal(tmp_path / GATE) as journal, Store(tmp_path / "collector.db") as store:
        uplink = Uplink(
            device_id=GATE, broker_url=site.broker_url, journal=journal, version="test",
            boot_id="boot-1", username=GATE, password=GATE_PASSWORD, tls=wrong,
        )  # fmt: skip
        collector = Collector(
            broker_url=site.broker_url, store=store, username="collector",
            password=collector_password(site), tls=wrong,
        )  # fmt: skip
        uplink.start()
        collector.start()
        try:
            for logger in ("gatescan.uplink", "gatescan.collector"):
                waiting.wait_until(
                    lambda logger=logger: [
                        record for record in caplog.records
                        if record.name == logger and "certificate was refused" in record.message
                    ],
                    TIMEOUT,
                    f"{logger}'s reason",
                )  # fmt: skip
            assert not uplink.connected
            assert not collector.wait_until_subscribed(0)
        finally:
            uplink.stop()
            collector.stop()
    assert "check the CA file" in caplog.text


def test_a_certificate_for_another_name_is_refused_by_the_hostname_check(
    site: Installation, broker: SiteBroker
) -> None:
    # 127.0.0.2 reaches the same broker (the TLS listener binds every address), but its
    # certificate names localhost, 127.0.0.1 and ::1 only.
    client = TlsClient(GATE, GATE_PASSWORD, client_tls_context(site_tls(site)))

    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        client.connect("127.0.0.2", tls_port(site))


def test_the_right_ca_lets_a_gate_log_in_and_its_certificate_names_the_host(
    site: Installation, broker: SiteBroker
) -> None:
    client = TlsClient(GATE, GATE_PASSWORD, client_tls_context(site_tls(site)))
    try:
        client.connect("localhost", tls_port(site))
        assert client.answered.wait(TIMEOUT), broker.log()
        assert client.connack is not None and not client.connack.is_failure
        connection = client.client.socket()
        assert isinstance(connection, ssl.SSLSocket)
        assert connection.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        client.close()


def test_plain_mqtt_to_the_tls_port_gets_no_connack(site: Installation, broker: SiteBroker) -> None:
    client = TlsClient("collector", collector_password(site), tls=None)
    try:
        client.connect("127.0.0.1", tls_port(site))  # the TCP connection itself opens

        assert client.disconnected.wait(TIMEOUT), "the broker kept a plain MQTT connection"
        assert client.connack is None
    finally:
        client.close()


def weak_client_context(ca_file: Path) -> ssl.SSLContext:
    """A client willing to speak TLS 1.0 and 1.1 only (and at security level 0: OpenSSL 3's
    default level refuses them on the client's side)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1_1 are deprecated
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def handshake(context: ssl.SSLContext, port: int) -> str | None:
    """The TLS version agreed with the broker on this port, or raises ssl.SSLError."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


def broker_variant(site: Installation, name: str, *, tls_version: str, weak_ciphers: bool) -> Path:
    """The generated config with its tls_version replaced (and SECLEVEL=0 ciphers added)."""
    text = site.files.conf.read_text(encoding="utf-8")
    assert "tls_version tlsv1.2\n" in text
    listener = f"tls_version {tls_version}\n" + (
        "ciphers DEFAULT:@SECLEVEL=0\n" if weak_ciphers else ""
    )
    variant = site.files.conf.with_name(name)
    variant.write_text(text.replace("tls_version tlsv1.2\n", listener), encoding="utf-8")
    return variant


@pytest.mark.parametrize("weak_ciphers", [False, True], ids=["as-generated", "seclevel-0-ciphers"])
def test_a_client_offering_only_tls_1_0_or_1_1_is_refused(
    site: Installation, weak_ciphers: bool
) -> None:
    conf = broker_variant(site, "weak-ciphers.conf", tls_version="tlsv1.2", weak_ciphers=True)
    conf = conf if weak_ciphers else site.files.conf
    with SiteBroker(conf, tls_port(site)) as running:
        with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|protocol version"):
            handshake(weak_client_context(site.files.ca_file), tls_port(site))
        waiting.wait_until(
            lambda: "unsupported protocol" in running.log(), TIMEOUT, "the broker's reason"
        )


def test_control_the_same_weak_client_gets_in_where_the_broker_allows_tls_1_1(
    site: Installation,
) -> None:
    conf = broker_variant(site, "tls11.conf", tls_version="tlsv1.1", weak_ciphers=True)
    with SiteBroker(conf, tls_port(site)) as running:
        assert handshake(weak_client_context(site.files.ca_file), tls_port(site)) == "TLSv1.1", (
            running.log()
        )


def this_machines_lan_address() -> str | None:
    """This machine's address on its default route, if it has one other than loopback. (A UDP
    connect sends nothing; it only picks the source address.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_the_plain_listener_answers_on_loopback_only(
    site: Installation, broker: SiteBroker
) -> None:
    port = loopback_port(site)
    local = TlsClient("collector", collector_password(site), tls=None)
    try:
        local.connect("127.0.0.1", port)
        assert local.answered.wait(TIMEOUT) and local.connack is not None
        assert not local.connack.is_failure
    finally:
        local.close()
    address = this_machines_lan_address()
    if address is None:
        pytest.skip("this machine has no address but loopback to try the plain listener on")

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=TIMEOUT).close()
    # The TLS listener, on every interface, does answer there: the refusal is the plain one's.
    socket.create_connection((address, tls_port(site)), timeout=TIMEOUT).close()


def test_a_gate_cannot_take_the_collectors_client_id_over_tls(
    site: Installation, broker: SiteBroker
) -> None:
    """use_username_as_clientid holds on the TLS listener (it is a per-listener setting)."""
    context = client_tls_context(site_tls(site))
    collector = TlsClient("collector", collector_password(site), context).connect(
        "localhost", tls_port(site)
    )
    impostor = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="collector", protocol=MQTTProtocolVersion.MQTTv5
    )
    impostor.username_pw_set(GATE, GATE_PASSWORD)
    impostor.tls_set_context(client_tls_context(site_tls(site)))
    connected = threading.Event()
    impostor.on_connect = lambda *_: connected.set()
    try:
        assert collector.answered.wait(TIMEOUT)
        impostor.connect("localhost", tls_port(site))
        impostor.loop_start()
        assert connected.wait(TIMEOUT)
        assert not collector.disconnected.wait(1.0), "the gate took the collector's client id"
    finally:
        impostor.disconnect()
        impostor.loop_stop()
        collector.close()


def test_the_collector_sends_each_gate_its_own_commands_over_tls(
    site: Installation, broker: SiteBroker, tmp_path: Path
) -> None:
    """The dashboard's door release as the site's broker carries it, with the rights `site init`
    and an enrolment give (the ACL file, and dynamic security's roles): the collector publishes
    commands; a gate kept in the password file and an enrolled gate each read their own only."""
    with BrokerAdmin(admin_login(site)) as broker_admin:
        broker_admin.ensure_gate("gate-enrolled", "hq", "an-enrolled-secret")
    received: dict[str, list[str]] = {GATE: [], "gate-enrolled": []}
    uplinks = []
    with Store(tmp_path / "collector.db") as store:
        collector = site_collector(site, store)
        collector.start()
        try:
            assert collector.wait_until_subscribed(TIMEOUT), broker.log()
            for device_id, password in (
                (GATE, GATE_PASSWORD),
                ("gate-enrolled", "an-enrolled-secret"),
            ):
                journal = Journal(tmp_path / device_id)
                uplink = Uplink(
                    device_id=device_id,
                    broker_url=site.broker_url,
                    journal=journal,
                    version="test",
                    boot_id="boot-1",
                    username=device_id,
                    password=password,
                    tls=site_tls(site),
                    on_command=lambda payload, mine=received[device_id]: mine.append(
                        parse_message(Topic.COMMAND, payload).command_id
                    ),
                )
                uplink.start()
                uplinks.append((uplink, journal))
            waiting.wait_until(lambda: all(u.connected for u, _ in uplinks), TIMEOUT, "online")
            time.sleep(0.3)  # the SUBSCRIBE sent on connect, answered
            release = door_releaser(collector)
            assert release(GATE, "alice", "cmd-tls-0001") is None
            assert release("gate-enrolled", "alice", "cmd-tls-0002") is None
            waiting.wait_until(lambda: all(received.values()), TIMEOUT, "both commands")
            time.sleep(0.3)
            assert received == {GATE: ["cmd-tls-0001"], "gate-enrolled": ["cmd-tls-0002"]}
        finally:
            for uplink, journal in uplinks:
                uplink.stop()
                journal.close()
            collector.stop()
