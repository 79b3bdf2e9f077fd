"""Remote commands' rights on the site's broker as `gatescan site init` writes it and runs it
(dynamic security and the ACL file, over TLS; issue 17): an enrolled gate answers its own
commands and writes its own logs, which reach the collector's store; another enrolled gate may
neither command it nor answer or log for it (PUBACK 0x87); and a broker set up before answers
and logs existed gets the rights from `grant_policy_rights`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocol.broker_tls import BrokerTls, client_tls_context
from protocol.broker_url import parse_broker_url
from protocol.messages import Command, CommandAnswer, GateLogs, LogLine, Status
from protocol.topics import Topic, device_topic
from server.broker_admin.dynsec import BrokerAdmin
from server.site.dynsec_config import (
    COLLECTOR_ROLE,
    GATE_ROLE_PREFIX,
    collector_reply_acls,
    gate_command_acls,
)
from server.site.installation import Installation
from server.store.database import Store
from server.store.gate_commands import GateCommands
from tests.support.remote_gate import answered, ask
from tests.support.tls_site import (
    SiteBroker,
    admin_login,
    new_site,
    site_broker,
    site_collector,
    site_folder,
)
from tests.support.waiting import wait_until

GATE, OTHER = "gate-enrolled", "gate-other"
PASSWORDS = {GATE: "an-enrolled-secret", OTHER: "another-enrolled-secret"}
NOT_AUTHORIZED = 0x87
TIMEOUT = 10.0


@pytest.fixture
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder)


@pytest.fixture
def broker(site: Installation) -> Iterator[SiteBroker]:
    with site_broker(site) as running:
        yield running


class TlsGate:
    """An enrolled gate as a bare paho client: answers every command it receives `done`, and
    records the broker's PUBACK reason code of each of its publishes."""

    def __init__(self, site: Installation, device_id: str) -> None:
        self.device_id = device_id
        self.commands: list[str] = []
        self._pubacks: dict[int, int] = {}
        self._lock = threading.Lock()
        self._up = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(device_id, PASSWORDS[device_id])
        self.client.tls_set_context(client_tls_context(BrokerTls(ca_file=site.files.ca_file)))
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        address = parse_broker_url(site.broker_url)
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert self._up.wait(TIMEOUT), "no CONNACK"

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(device_topic(self.device_id, Topic.COMMAND), qos=1)
        self._up.set()

    def _on_publish(self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with self._lock:
            self._pubacks[mid] = reason.value

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        command = Command.model_validate_json(message.payload)
        self.commands.append(command.command_id)
        # Not waited for here: paho's thread, which reads the PUBACK, is this one.
        topic = device_topic(self.device_id, Topic.ANSWER)
        self.client.publish(topic, answer(command, self.device_id), qos=1)

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self._pubacks, TIMEOUT, f"the PUBACK on {topic}")
        return self._pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def answer(command: Command, device_id: str) -> bytes:
    return CommandAnswer(
        command_id=command.command_id, device_id=device_id, action=command.action,
        status="done", detail="blinking", ts=datetime.now(UTC),
    ).to_json()  # fmt: skip


def logs(device_id: str, message: str) -> bytes:
    line = LogLine(ts=datetime.now(UTC), level="WARNING", logger="gatescan.t", message=message)
    return GateLogs(device_id=device_id, lines=[line]).to_json()


def test_only_the_server_commands_an_enrolled_gate_and_only_it_answers_and_logs(
    site: Installation, broker: SiteBroker, tmp_path: Path
) -> None:
    with BrokerAdmin(admin_login(site)) as admin:
        for device_id, password in PASSWORDS.items():
            admin.ensure_gate(device_id, "hq", password)
    with Store(tmp_path / "server.db") as store:
        store.record_status(GATE, _status(), datetime.now(UTC))
        collector = site_collector(site, store)
        collector.start()
        gate, other = TlsGate(site, GATE), TlsGate(site, OTHER)
        try:
            assert collector.wait_until_subscribed(TIMEOUT), broker.log()
            row = answered(store, ask(store, "identify", device_id=GATE), TIMEOUT)
            assert (row.status, row.detail) == ("done", "blinking")
            assert gate.publish(device_topic(GATE, Topic.LOGS), logs(GATE, "own line")) == 0
            wait_until(lambda: GateCommands(store.engine).logs(GATE), TIMEOUT, "the logs stored")

            forged = Command(
                command_id="forged-0001", action="restart", issued_at=datetime.now(UTC), by="m"
            )
            assert other.publish(device_topic(GATE, Topic.COMMAND), forged.to_json()) == (
                NOT_AUTHORIZED
            )
            assert other.publish(device_topic(GATE, Topic.ANSWER), answer(forged, GATE)) == (
                NOT_AUTHORIZED
            )
            assert other.publish(device_topic(GATE, Topic.LOGS), logs(GATE, "forged")) == (
                NOT_AUTHORIZED
            )
            assert "forged-0001" not in gate.commands
            assert [r.message for r in GateCommands(store.engine).logs(GATE)] == ["own line"]

            # A site from before answers and logs: its ACL file and its roles without those
            # rights...
            acl = site.files.acl_file
            kept = [line for line in acl.read_text().splitlines(keepends=True)
                    if not line.rstrip().endswith(("/answer", "/logs"))]  # fmt: skip
            acl.write_text("".join(kept))
            assert broker.process is not None
            broker.process.send_signal(signal.SIGHUP)  # rereads its ACL file
            with BrokerAdmin(admin_login(site)) as admin:
                for entry in gate_command_acls(GATE)[2:]:
                    admin.command("removeRoleACL", rolename=GATE_ROLE_PREFIX + GATE,
                                  acltype=entry["acltype"], topic=entry["topic"])  # fmt: skip
                for entry in collector_reply_acls():
                    admin.command("removeRoleACL", rolename=COLLECTOR_ROLE,
                                  acltype=entry["acltype"], topic=entry["topic"])  # fmt: skip
            assert gate.publish(device_topic(GATE, Topic.LOGS), logs(GATE, "x")) == NOT_AUTHORIZED
            # ...get them back from what the server runs at its start.
            with BrokerAdmin(admin_login(site)) as admin:
                admin.grant_policy_rights({GATE: "hq", OTHER: "hq"})
            assert gate.publish(device_topic(GATE, Topic.LOGS), logs(GATE, "back")) == 0
            wait_until(
                lambda: "back" in [r.message for r in GateCommands(store.engine).logs(GATE)],
                TIMEOUT,
                "the collector reading logs again",
            )
        finally:
            gate.close()
            other.close()
            collector.stop()


def _status() -> Status:
    return Status(state="online", ts=datetime.now(UTC), version="t", site_id="hq")
