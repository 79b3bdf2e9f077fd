"""The gates as Home Assistant sees them, published from the server's database: the thread
`home-assistant` of `gatescan server` when server.toml has a [home_assistant] section.

Why the server and not the gates: the server knows every gate (the registry and what each last
said), a gate's broker rights stay its own topics (never `homeassistant/#`), and Home Assistant
usually has a broker of its own, which only the server needs to reach. The publisher has a
connection of its own (`HomeAssistantLogin`, often another broker than the gates'), so the
collector's connection and rights are not touched either.

Every `every_s` seconds it reads the database: the registry (a retired gate is removed from HA:
empty retained configs), every gate heard from (its status, when last heard, its telemetry's
fps, its location and version) and the entries since the previous round for each gate's last
scan (a time only: the gate's clock when it was synchronised, else when the collector received
it). At start it finds each gate's last scan once over the whole table (one pass over the
ts/device index); later rounds read only the entries received since a minute before the
previous round (`ix_entries_received_at`). It publishes at QoS 1, retained, and only what
changed since it last published it; after every (re)connect, and when Home Assistant announces
itself on `<discovery_prefix>/status`, it publishes everything again. Its last will says the
bridge is offline, so HA shows every entity unavailable when the server is down.

A database or broker error is logged and the round tried again: nothing here stops the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import case, func, select

from protocol.broker_tls import BrokerTls, client_tls_context
from protocol.broker_url import parse_broker_url
from server.clock import utc_now
from server.home_assistant.discovery import (
    OFFLINE,
    ONLINE,
    GateView,
    Prefixes,
    discovery_messages,
    removal_messages,
    state_messages,
)
from server.store.database import DeviceRecord, Store
from server.store.gates import GateRegistry
from server.store.tables import entries_table

log = logging.getLogger("gatescan.home_assistant")

DEFAULT_EVERY_S = 5.0
DEFAULT_PREFIXES = Prefixes()
LATE_COMMIT_S = 60.0  # a batch received this long before a round may commit after it


@dataclass(frozen=True)
class HomeAssistantLogin:
    """How the publisher reaches Home Assistant's broker (the password never in a file's text)."""

    broker_url: str
    username: str | None = None
    password: str | None = None
    client_id: str = "gatescan-home-assistant"
    tls: BrokerTls = field(default_factory=BrokerTls)


class HomeAssistantPublisher:
    """Discovery and states of every gate, kept up to date in a thread of its own."""

    def __init__(
        self,
        store: Store,
        login: HomeAssistantLogin,
        prefixes: Prefixes = DEFAULT_PREFIXES,
        *,
        offline_after_s: float = 120.0,
        every_s: float = DEFAULT_EVERY_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._registry = GateRegistry(store.engine)
        self._login = login
        self.prefixes = prefixes
        self._offline_after = timedelta(seconds=offline_after_s)
        self._every_s = every_s
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()  # a (re)connect or HA's birth: publish everything
        self._published: dict[str, bytes] = {}  # topic -> payload as the broker holds it
        self._last_scans: dict[str, datetime] = {}
        self._scans_read_to: datetime | None = None  # None: read the whole table first
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=login.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if login.username is not None:
            self._client.username_pw_set(login.username, login.password)
        self._client.will_set(prefixes.bridge_availability, OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self.rounds = 0  # rounds done, for tests and the log

    def start(self) -> None:
        address = parse_broker_url(self._login.broker_url)
        if address.tls:
            self._client.tls_set_context(client_tls_context(self._login.tls))
        self._client.connect_async(address.host, address.port, keepalive=30)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="home-assistant", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Say the bridge is offline (HA marks every entity unavailable), then disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._client.is_connected():
            info = self._client.publish(self.prefixes.bridge_availability, OFFLINE, 1, True)
            info.wait_for_publish(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    # --- the round ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._every_s)
            self._wake.clear()
            if self._stop.is_set() or not self._client.is_connected():
                continue
            try:
                self.publish_round()
            except Exception:  # a database or broker error: the next round tries again
                log.exception("home assistant: a round failed")

    def publish_round(self) -> None:
        """Read the database, publish what changed (everything after a reconnect)."""
        now = self._clock()
        messages = self.messages(now)
        for topic, payload in messages.items():
            if self._published.get(topic) == payload:
                continue
            info = self._client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(timeout=10)
            self._published[topic] = payload
        self.rounds += 1

    def messages(self, now: datetime) -> dict[str, bytes]:
        """Every retained message HA should hold now: the bridge, then per gate its configs
        and states, or for a retired gate their removal."""
        self._read_last_scans(now)
        gates = {gate.device_id: gate for gate in self._registry.all()}
        devices = {device.device_id: device for device in self._store.devices()}
        messages: dict[str, bytes] = {self.prefixes.bridge_availability: ONLINE.encode()}
        for device_id in sorted(gates.keys() | devices.keys()):
            registered = gates.get(device_id)
            if registered is not None and registered.state == "retired":
                messages |= removal_messages(device_id, self.prefixes)
                continue
            device = devices.get(device_id)
            if device is None and registered is not None and registered.state == "pending":
                continue  # never enrolled, never heard: nothing to show yet
            view = self._view(device_id, device, registered, now)
            messages |= discovery_messages(view, self.prefixes)
            messages |= state_messages(view, self.prefixes)
        return messages

    def _view(
        self, device_id: str, device: DeviceRecord | None, registered: Any, now: datetime
    ) -> GateView:
        # The fleet page's "online" (server/dashboard/reports/fleet.py): the retained status says
        # so AND the gate was heard within offline_after (a clean disconnect skips the will).
        online = (
            device is not None
            and device.state == "online"
            and device.last_seen is not None
            and now - device.last_seen <= self._offline_after
        )
        fps = None
        if device is not None and device.telemetry is not None:
            value = device.telemetry.get("fps")
            fps = float(value) if isinstance(value, int | float) else None
        site = (device.site_id if device else "") or (registered.site_id if registered else "")
        where = (device.location if device else "") or (registered.location if registered else "")
        version = (device.version if device else "") or (
            registered.agent_version if registered else ""
        )
        return GateView(
            device_id=device_id,
            site_id=site,
            location=where,
            version=version,
            online=online,
            last_scan=self._last_scans.get(device_id),
            fps=fps,
        )

    def _read_last_scans(self, now: datetime) -> None:
        entries = entries_table.c
        when = case((entries.clock_synced, entries.ts), else_=entries.received_at)
        newest = func.max(when, type_=entries.ts.type)
        query = select(entries.device_id, newest).group_by(entries.device_id)
        if self._scans_read_to is not None:
            since = self._scans_read_to - timedelta(seconds=LATE_COMMIT_S)
            query = query.where(entries.received_at >= since)
        with self._store.engine.connect() as conn:
            rows = conn.execute(query).all()
        for device_id, value in rows:
            latest = _aware(value)
            known = self._last_scans.get(device_id)
            if latest is not None and (known is None or latest > known):
                self._last_scans[device_id] = latest
        self._scans_read_to = now

    # --- paho's thread --------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("home assistant: the broker refused the connection: %s", reason)
            return
        log.info("home assistant: connected to %s", self._login.broker_url)
        self._published.clear()  # the broker may have lost what it held: everything again
        client.subscribe(self.prefixes.ha_status, qos=1)
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.prefixes.ha_status and message.payload == ONLINE.encode():
            self._published.clear()  # HA restarted: it wants the configs again
            self._wake.set()


def _aware(value: object) -> datetime | None:
    """A MAX() over a CASE comes back untyped (a string on SQLite): read it as UTC."""
    from datetime import UTC

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
