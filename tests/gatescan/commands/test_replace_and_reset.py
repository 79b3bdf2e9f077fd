"""Replacing a gate's card and a factory reset, end to end: a real Mosquitto and collector, the
old card's journal and uplink (tests/support/journal_gate.py), the commands as an admin and a
technician run them (real processes, a `site init` folder, SQLite).

The old card's unacknowledged events are never lost silently: `gate replace` says how many the
gate's last telemetry counted, `journal export` takes them from the card, `gate deliver` stores
them under the gate's id (each once: one the server had stored before is not stored again), and
`gatescan reset` refuses to wipe a card that still holds them unless their number is named."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device.enrolment.identity import load_identity, store_identity
from device.journal.journal import Journal
from device.site_policy.files import FOLDER as POLICY_FOLDER
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import sample_cards
from protocol.enrolment import EnrolmentGrant
from protocol.messages import Telemetry
from protocol.topics import Topic, device_topic
from protocol.verdicts import Direction
from server.app import CollectorLogin, init_collector
from server.clock import utc_now
from server.store.database import Store
from server.store.gates import GateRegistry
from tests.support.cli import run_gatescan
from tests.support.journal_gate import JournalGate
from tests.support.waiting import wait_until

DEVICE = "gate-r1"


def gatescan(*args: str) -> tuple[int, str, str]:
    done = run_gatescan(list(args))
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    code, _, err = gatescan("site", "init", str(folder), "--host", "broker.lan",
                            "--mqtt-port", "18999")  # fmt: skip
    assert code == 0, err
    return folder / "server.toml"


class Site:
    def __init__(self, broker: LocalBroker, tmp_path: Path, config: Path) -> None:
        self.db = f"sqlite:///{tmp_path / 'gatescan.db'}"
        self.config = config
        self.server = ["--config", str(config), "--db", self.db]
        code, _, err = gatescan("gate", "add", DEVICE, "--site", "hq", "--qr",
                                str(tmp_path / "first.png"), *self.server)  # fmt: skip
        assert code == 0, err
        self.store = Store(self.db)
        GateRegistry(self.store.engine).set_state(DEVICE, "enrolled", utc_now())
        login = CollectorLogin(broker.url, client_id="collector", share_group=None)
        collector = init_collector(self.store, login)
        assert collector is not None
        self.collector = collector
        self.collector.start()
        self.broker = broker

    def stored_ids(self) -> list[str]:
        return [entry.event_id for entry in self.store.entries(device_id=DEVICE)]

    def telemetry(self, outbox_depth: int) -> None:
        """What the old card's agent said last: its outbox's depth."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        telemetry = Telemetry(
            ts=utc_now(), uptime_s=60.0, fps=25.0, decode_ms=3.0, outbox_depth=outbox_depth,
            clock_synced=True, version="1.0",
        )  # fmt: skip
        topic = device_topic(DEVICE, Topic.TELEMETRY)
        client.publish(topic, telemetry.to_json(), 1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()

    def close(self) -> None:
        self.collector.stop()
        self.store.close()


@pytest.fixture
def site(broker: LocalBroker, tmp_path: Path, config: Path) -> Iterator[Site]:
    running = Site(broker, tmp_path, config)
    try:
        yield running
    finally:
        running.close()


def _old_card(site: Site, data_dir: Path) -> JournalGate:
    return JournalGate(site.broker.url, data_dir, device_id=DEVICE, boot_id="old-card",
                       resend_after=30.0, version="1.0")  # fmt: skip


def _grant(config: Path) -> EnrolmentGrant:
    return EnrolmentGrant(
        device_id=DEVICE, site_id="hq", location="Lobby", direction=Direction.IN,
        broker_url="mqtts://broker.lan:18999", username=DEVICE, password="old-card-password",
        ca_pem=(config.parent / "ca.crt").read_text(encoding="ascii"),
    )  # fmt: skip


def test_a_replaced_gate_s_undelivered_events_are_counted_delivered_once_and_the_card_reset(
    site: Site, tmp_path: Path
) -> None:
    old_dir = tmp_path / "old-card"
    store_identity(old_dir, _grant(site.config))
    (old_dir / POLICY_FOLDER / "hq").mkdir(parents=True)
    codes = [card.payload() for card in sample_cards()]
    old = _old_card(site, old_dir)
    old.uplink.start()
    delivered = [old.show(code) for code in codes[:3]]
    wait_until(lambda: not old.pending_ids(), 10, "the first events acknowledged")
    old.uplink.stop()  # the card's network is gone (the Pi died, the card was pulled)
    stranded = [old.show(code) for code in codes[3:7]]
    # One of them reached the server but its ack never came back: stored, yet still pending.
    site.store.add_events([stranded[0]], utc_now())
    site.telemetry(outbox_depth=len(stranded))
    wait_until(
        lambda: any(d.telemetry for d in site.store.devices() if d.device_id == DEVICE),
        10,
        "the telemetry stored",
    )
    old.journal.close()
    assert len(site.stored_ids()) == 4

    # The admin replaces the gate: told how many events the old card holds, and how to get them.
    code, out, err = gatescan("gate", "replace", DEVICE, "--qr", str(tmp_path / "new.png"),
                              *site.server, "--admin-password-file", "/dev/null")  # fmt: skip
    assert "enrolment card written" in out, err  # the broker (not running) is told later: exit 1
    assert "said 4 event(s) were not yet acknowledged" in err, err
    assert f"gatescan journal export --data-dir CARD --out {DEVICE}.jsonl" in err
    assert GateRegistry(site.store.engine).get(DEVICE).state == "pending"  # type: ignore[union-attr]

    # The old card, factory reset before its events are out: refused, and nothing changes.
    code, _, err = gatescan("reset", "--data-dir", str(old_dir))
    assert code == 2 and "holds 4 event(s) the server has not acknowledged" in err, err
    code, _, err = gatescan("reset", "--data-dir", str(old_dir), "--discard-unacked", "3")
    assert code == 2 and "(not 3)" in err, err
    assert load_identity(old_dir) is not None

    # The technician takes the events off the card; the admin delivers them.
    export = tmp_path / "old-card.jsonl"
    code, _, err = gatescan("journal", "export", "--data-dir", str(old_dir), "--out", str(export))
    assert code == 0 and "4 unacknowledged event(s) of gate-r1" in err, err
    assert export.stat().st_mode & 0o777 == 0o600
    code, _, err = gatescan("gate", "deliver", DEVICE, str(export), *site.server)
    assert code == 0, err
    assert "4 event(s) read, 3 stored now, 1 stored before, 0 refused" in err
    stored = site.stored_ids()
    assert sorted(stored) == sorted(e.event_id for e in delivered + stranded)  # no loss, no dup
    # Delivered again (a second try, a copy of the file): nothing stored twice.
    code, _, err = gatescan("gate", "deliver", DEVICE, str(export), *site.server)
    assert code == 0 and "0 stored now, 4 stored before" in err, err
    assert len(site.stored_ids()) == 7

    # Now the card may be wiped, its count named: back to setup mode, nothing of the site kept.
    code, _, err = gatescan("reset", "--data-dir", str(old_dir), "--discard-unacked", "4")
    assert code == 0, err
    assert "journal removed (4 unacknowledged event(s) discarded)" in err
    assert load_identity(old_dir) is None
    assert not (old_dir / "journal").exists() and not (old_dir / POLICY_FOLDER).exists()


def test_another_gate_s_events_and_a_broken_line_are_refused_as_dead_letters(
    site: Site, tmp_path: Path
) -> None:
    wrong = _old_card(site, tmp_path / "other")
    event = wrong.show(sample_cards()[0].payload())
    wrong.close()
    other = event.model_copy(update={"device_id": "gate-other"})
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(event.to_json() + b"\n" + other.to_json() + b"\n{not json\n")

    code, _, err = gatescan("gate", "deliver", DEVICE, str(path), *site.server)

    assert code == 1, err
    assert "3 event(s) read, 1 stored now, 0 stored before, 2 refused" in err
    assert re.search(r"refused \(.*device_mismatch.*\)", err), err
    assert site.store.dead_letter_count() == 2


def test_reset_is_refused_while_the_agent_runs_and_may_keep_the_journal(
    site: Site, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gate"
    store_identity(data_dir, _grant(site.config))
    gate = _old_card(site, data_dir)  # its journal open: as a running agent holds it
    gate.show(sample_cards()[0].payload())
    try:
        code, _, err = gatescan("reset", "--data-dir", str(data_dir), "--discard-unacked", "1")
        assert code == 1 and "the agent is running" in err, err
        assert load_identity(data_dir) is not None
    finally:
        gate.close()

    code, _, err = gatescan("reset", "--data-dir", str(data_dir), "--keep-journal")

    assert code == 0 and "journal kept (1 unacknowledged event(s) in it)" in err, err
    assert load_identity(data_dir) is None
    with Journal(data_dir, retention_days=None) as journal:
        assert journal.outbox_depth() == 1


def test_a_reset_gate_whose_config_has_no_broker_starts_in_setup_mode(
    site: Site, tmp_path: Path
) -> None:
    from device.app import needs_enrolment
    from firmware_config.loader import load_config

    data_dir = tmp_path / "gate"
    config = tmp_path / "gate.toml"
    config.write_text(f'device_id = "{DEVICE}"\ndata_dir = "{data_dir}"\n', encoding="utf-8")
    store_identity(data_dir, _grant(site.config))
    assert not needs_enrolment(load_config(config), load_identity(data_dir))

    code, _, err = gatescan("reset", "--config", str(config))

    assert code == 0 and "the gate enrols again in setup mode" in err, err
    assert needs_enrolment(load_config(config), load_identity(data_dir))
