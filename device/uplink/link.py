"""The gate's MQTT link (paho-mqtt 2.x, MQTT v5): status and last will, events, acks, telemetry.

Delivery rule: the journal is the truth. An event leaves the outbox only when the collector's ack
names it (the collector acks after its database commit), never on the broker's PUBACK, which
proves nothing about storage. Until then it is resent: `resend_after` seconds after it was sent,
and after every reconnect.

An event refused for good never blocks the others: when the collector's ack lists it in
`rejected`, the broker refused it BROKER_REFUSALS_BEFORE_REJECTING times in a row, or it is larger
than the broker's announced maximum packet size, the journal moves it from the outbox to its
`rejected` table (kept, never deleted), the in-flight window lets it go, and one ERROR says which
event and why.

The site's policy (protocol/site_policy.py) comes the other way: on every connect a gate with a
site id subscribes (QoS 1) to its site's policy topics, and hands each message, on paho's thread,
to `on_policy_message` (device/site_policy/holder.py applies it). The retained status says which
policy version the gate decides with (`policy_version`), re-published when it changes. A gate
given `on_command` also subscribes (QoS 1) to its own `command` topic and hands each payload, on
paho's thread, to it (device/uplink/commands.py checks it before the door is released). A gate
given `on_preview_request` likewise subscribes to its own `preview_request` topic and sends the
preview's frames with `publish_preview` (QoS 0; device/preview/).

Threads: paho's network thread runs the callbacks; one sender thread owns the in-flight window
(inflight.py: what to publish or resend when), publishes events and writes acks to the journal.
It publishes each event's wire bytes as the journal keeps them (`PendingEvent.wire`, made once
when the event was journaled): nothing on its path validates or serialises an Event.
Callbacks reach the sender only through a queue of notices, handled in arrival order, so the
window needs no lock and a PUBACK can never be seen before the publish it answers was recorded.
Nothing here blocks the caller on the network.
"""

from __future__ import annotations

import errno
import logging
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from device.journal.journal import Journal
from device.system.health import LinkState
from device.uplink.inflight import InFlightWindow
from protocol.broker_tls import BrokerTls, client_tls_context, connect_failure
from protocol.broker_url import parse_broker_url
from protocol.messages import (
    CommandAnswer,
    GateLogs,
    MessageError,
    Rejection,
    Status,
    Telemetry,
    parse_message,
)
from protocol.preview.wire import preview_request_topic, preview_topic
from protocol.site_policy import SITES_PREFIX, policy_subscription
from protocol.text import printable
from protocol.topics import Topic, device_topic
from protocol.transport import send_at_once
from protocol.verdicts import Direction

log = logging.getLogger("gatescan.uplink")

IN_FLIGHT_WINDOW = 100  # published-but-unacked events at most: a backlog flushes steadily
RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30
# A broker refusal (PUBACK >= 0x80: not authorized, packet too large, quota exceeded...) may be
# passing: an ACL file reloaded mid-edit, an auth plugin not ready after a broker restart, a
# broker briefly over its memory limit. Five in a row, each at least resend_after apart (10 s by
# default) unless a reconnect comes first, is the same answer for 40 s or more: no blip. The
# event is then set aside, not lost, and a slot of the window is freed within a minute.
BROKER_REFUSALS_BEFORE_REJECTING = 5
# MQTT v5 reason code "Packet too large": how an event beyond the broker's announced limit is set
# aside. paho sends a packet beyond that limit anyway, and the broker drops the connection for
# it, so it would come back with the same event after every reconnect.
PACKET_TOO_LARGE = 0x95
# CONNACK reason codes (MQTT v5) that refuse this gate itself, not a passing state of the broker:
# client id not valid, bad user name or password, not authorised, banned, bad auth method.
REFUSED_LOGINS = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})
# Socket errors that mean the gate's own network is missing rather than the broker.
_NO_NETWORK_ERRNOS = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH})


def link_problem(error: BaseException | None) -> LinkState:
    """Why connecting failed, as the light shows it: a broker certificate the gate refused is a
    refusal of credentials (the CA or the identity is wrong), no route or no DNS answer is no
    network, anything else an unreachable broker."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return LinkState.REFUSED
    if isinstance(error, socket.gaierror):
        return LinkState.NO_NETWORK
    if isinstance(error, OSError) and error.errno in _NO_NETWORK_ERRNOS:
        return LinkState.NO_NETWORK
    return LinkState.UNREACHABLE


def connack_problem(reason: ReasonCode) -> LinkState:
    return LinkState.REFUSED if reason.value in REFUSED_LOGINS else LinkState.UNREACHABLE


@dataclass(frozen=True)
class _LinkChanged:
    up: bool
    max_packet_size: int | None = None  # the broker's limit, from its CONNACK (MQTT v5)


@dataclass(frozen=True)
class _BrokerAnswered:
    mid: int
    reason: ReasonCode


@dataclass(frozen=True)
class _Acked:
    event_ids: tuple[str, ...]
    rejected: tuple[Rejection, ...] = ()


_Notice = _LinkChanged | _BrokerAnswered | _Acked


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _logging_failures(callback: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that raises would end paho's network thread: log the error instead."""

    def guarded(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("uplink callback %s failed", callback.__name__)

    return guarded


class Uplink:
    """Sends the journal's outbox to the collector and keeps the gate's retained status."""

    def __init__(
        self,
        *,
        device_id: str,
        broker_url: str,
        journal: Journal,
        version: str,
        boot_id: str,
        keepalive: int = 15,
        resend_after: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        tls: BrokerTls | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        on_link_problem: Callable[[LinkState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        placement: Placement | None = None,
        on_policy_message: Callable[[str, bytes], object] | None = None,
        policy_version: Callable[[], int | None] = lambda: None,
        on_command: Callable[[bytes], object] | None = None,
        on_preview_request: Callable[[bytes], object] | None = None,
    ) -> None:
        if keepalive < 1:
            raise ValueError(f"keepalive must be at least 1 s, not {keepalive}")
        if resend_after <= 0:
            raise ValueError(f"resend_after must be positive, not {resend_after}")
        self._address = parse_broker_url(broker_url)
        self._broker_url = broker_url
        self._tls = tls or BrokerTls()
        if self._tls.any_file and not self._address.tls:
            raise ValueError(f"TLS files given for {broker_url!r}, which is not mqtts://")
        self._status_topic = device_topic(device_id, Topic.STATUS)
        self._events_topic = device_topic(device_id, Topic.EVENTS)
        self._telemetry_topic = device_topic(device_id, Topic.TELEMETRY)
        self._ack_topic = device_topic(device_id, Topic.ACK)
        self._command_topic = device_topic(device_id, Topic.COMMAND)
        self._answer_topic = device_topic(device_id, Topic.ANSWER)
        self._logs_topic = device_topic(device_id, Topic.LOGS)
        self._on_command = on_command
        self._preview_topic = preview_topic(device_id)
        self._preview_request_topic = preview_request_topic(device_id)
        self._on_preview_request = on_preview_request
        self._broker_max_packet: int | None = None  # paho's thread's copy, for previews
        self._journal = journal
        self._version = version
        self._boot_id = boot_id
        self._placement = placement or Placement()
        site_id = self._placement.site_id
        self._policy_topic = (
            policy_subscription(site_id) if site_id and on_policy_message is not None else None
        )
        self._on_policy_message = on_policy_message
        self._policy_version = policy_version
        self._published_policy_version: int | None = None
        self._keepalive = keepalive
        self._on_connection_change = on_connection_change
        self._on_link_problem = on_link_problem
        self._clock = clock
        self._wall_clock = wall_clock
        self._window = InFlightWindow(size=IN_FLIGHT_WINDOW, resend_after=resend_after)
        # The sender also wakes on this tick, so resend timeouts are noticed without a nudge.
        self._tick = min(1.0, max(0.05, resend_after / 4))
        self._lock = threading.Lock()  # guards _connected and _faults
        self._connected = False
        self._faults: list[str] = []
        self._notices: queue.SimpleQueue[_Notice] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._refusals_logged: set[str] = set()
        self._max_packet_size: int | None = None  # the sender's copy of the broker's limit
        self._client = self._make_client(client_id or f"gatescan-{device_id}", username, password)

    # -- the caller's side ------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once, even when the broker is down."""
        if self._sender is not None:
            raise RuntimeError("the uplink is already started")
        log.info("connecting to %s", self._broker_url)
        self._client.connect_async(
            self._address.host, self._address.port, keepalive=self._keepalive, clean_start=True
        )
        self._client.loop_start()
        self._sender = threading.Thread(target=self._run_sender, name="uplink-sender", daemon=True)
        self._sender.start()

    def event_recorded(self) -> None:
        """A new event is in the journal's outbox. Returns at once."""
        self._wake.set()

    def publish_telemetry(self, telemetry: Telemetry) -> None:
        """Best effort (QoS 0): dropped silently while offline."""
        if self.connected:
            self._client.publish(self._telemetry_topic, telemetry.to_json(), qos=0)

    def publish_answer(self, answer: CommandAnswer) -> mqtt.MQTTMessageInfo:
        """A command's answer, QoS 1, not retained: queued by paho while offline (a gate's
        session is clean, so an answer queued across a reconnect may be lost: the command's
        row then stays `sent` on the server)."""
        return self._client.publish(self._answer_topic, answer.to_json(), qos=1)

    def publish_logs(self, logs: GateLogs) -> None:
        """Best effort (QoS 0): dropped while offline (the lines stay in the ring)."""
        if self.connected:
            self._client.publish(self._logs_topic, logs.to_json(), qos=0)

    def publish_preview(self, payload: bytes) -> bool:
        """A preview frame (QoS 0, not retained): dropped while offline, or when it is larger
        than the broker's announced limit (it would cost the connection). True when handed on."""
        limit = self._broker_max_packet
        if not self.connected:
            return False
        if limit is not None and _publish_packet_size(self._preview_topic, payload) > limit:
            log.warning("preview frame of %d bytes over the broker's limit: dropped", len(payload))
            return False
        info = self._client.publish(self._preview_topic, payload, qos=0)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def set_faults(self, faults: Sequence[str]) -> None:
        """Re-publish the retained status with these faults now, or on the next connect."""
        words = [str(fault) for fault in faults]  # a StrEnum's str() is its wire word
        with self._lock:
            if words == self._faults:
                return
            self._faults = words
            payload = self._status_payload("online") if self._connected else None
        if payload is not None:
            self._client.publish(self._status_topic, payload, qos=1, retain=True)

    def policy_changed(self) -> None:
        """The site policy held changed: re-publish the retained status if its version did."""
        with self._lock:
            if not self._connected or self._policy_version() == self._published_policy_version:
                return
            payload = self._status_payload("online")
        self._client.publish(self._status_topic, payload, qos=1, retain=True)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def in_flight(self) -> int:
        """Events published and not yet acknowledged by the collector (a snapshot)."""
        return len(self._window)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the retained `offline`, wait (bounded) until the broker has it, disconnect."""
        if self._sender is None:
            return
        deadline = self._clock() + timeout
        self._stopping.set()
        self._wake.set()
        self._sender.join(timeout=max(0.0, deadline - self._clock()))
        if self.connected:
            with self._lock:
                payload = self._status_payload("offline")
            info = self._client.publish(self._status_topic, payload, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.0, deadline - self._clock()))
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the offline status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        try:
            if not self._sender.is_alive():
                self._handle_notices()  # acks that came in while stopping still leave the outbox
        except Exception:
            log.exception("could not record the last acks; those events will be sent again")

    # -- the sender thread ------------------------------------------------------------------

    def _run_sender(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._tick)
            self._wake.clear()
            try:
                self._handle_notices()
                if self.connected and not self._stopping.is_set():
                    self._send_due()
            except Exception:
                # Never let the sender die: the journal keeps the events, the next tick retries.
                log.exception("uplink sender failed; retrying")
                self._stopping.wait(self._tick)

    def _handle_notices(self) -> None:
        acked: list[str] = []
        rejected: list[Rejection] = []
        while True:
            try:
                notice = self._notices.get_nowait()
            except queue.Empty:
                break
            if isinstance(notice, _Acked):
                acked.extend(notice.event_ids)
                rejected.extend(notice.rejected)
            elif isinstance(notice, _BrokerAnswered):
                rejected.extend(self._broker_answered(notice))
            elif notice.up:
                self._window.reconnected(self._clock())
                self._refusals_logged.clear()
                self._max_packet_size = notice.max_packet_size
            else:
                self._window.connection_lost()
        if acked:
            self._record_acks(acked)
        # An event both stored and refused (two collectors?) counts as stored.
        stored = set(acked)
        rejected = [rejection for rejection in rejected if rejection.event_id not in stored]
        if rejected:
            self._record_rejections(rejected)

    def _record_acks(self, event_ids: list[str]) -> None:
        # One journal write for every ack that arrived since the last wake-up.
        try:
            removed = self._journal.acknowledge(event_ids)
        except OSError as exc:
            log.error("could not drop %d acked events (%s): resent later", len(event_ids), exc)
            return
        self._window.settled(event_ids)
        self._refusals_logged.difference_update(event_ids)
        log.debug("collector acked %d events, %d left the outbox", len(event_ids), removed)

    def _record_rejections(self, rejections: list[Rejection]) -> None:
        try:
            moved = self._journal.reject(rejections)
        except OSError as exc:
            # Still in the outbox: resent, refused again, and set aside then.
            log.error("could not set aside %d rejected events (%s)", len(rejections), exc)
            return
        event_ids = [rejection.event_id for rejection in rejections]
        self._window.settled(event_ids)
        self._refusals_logged.difference_update(event_ids)
        for rejection in moved:  # only those still in the outbox: one ERROR per event
            log.error(
                "event %s refused for good: %s (%s); moved from the outbox to the journal's "
                "rejected table",
                rejection.event_id,
                printable(rejection.reason, 64),
                printable(rejection.detail, 300),
            )

    def _broker_answered(self, notice: _BrokerAnswered) -> list[Rejection]:
        """Note the broker's answer; an event it kept refusing comes back as a rejection."""
        refused = notice.reason.is_failure
        event_id = self._window.broker_answered(notice.mid, refused=refused)
        if not refused:
            return []
        if event_id is None or self._window.refusals(event_id) < BROKER_REFUSALS_BEFORE_REJECTING:
            self._log_refusal(event_id, notice.mid, notice.reason)
            return []
        code = f"broker_refused:0x{notice.reason.value:02x}"
        return [Rejection(event_id=event_id, reason=code, detail=printable(str(notice.reason)))]

    def _send_due(self) -> None:
        pending = self._journal.pending(limit=IN_FLIGHT_WINDOW)
        too_large: list[Rejection] = []
        for entry in self._window.due(pending, self._clock(), limit=IN_FLIGHT_WINDOW):
            if not self.connected or self._stopping.is_set():
                break
            size = _publish_packet_size(self._events_topic, entry.wire)
            limit = self._max_packet_size
            if limit is not None and size > limit:
                detail = f"{size} bytes > the broker's maximum packet size of {limit}"
                reason = f"broker_refused:0x{PACKET_TOO_LARGE:02x}"
                too_large.append(Rejection(event_id=entry.event_id, reason=reason, detail=detail))
                continue
            info = self._client.publish(self._events_topic, entry.wire, qos=1)
            # NO_CONN: paho keeps the message and sends it on the next connect.
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("event %s not queued: %s", entry.event_id, mqtt.error_string(info.rc))
                continue
            self._window.published(entry.event_id, entry.seq, info.mid, self._clock())
        if too_large:
            self._record_rejections(too_large)

    def _log_refusal(self, event_id: str | None, mid: int, reason: ReasonCode) -> None:
        # Loud once per event and connection: a refused event comes back every resend_after.
        level = logging.DEBUG if event_id in self._refusals_logged else logging.WARNING
        self._refusals_logged.add(event_id or "")
        what = f"event {event_id}" if event_id else f"message {mid}"
        log.log(
            level,
            "broker refused %s: %s (0x%02x), kept in the outbox (set aside after %d refusals)",
            what,
            reason,
            reason.value,
            BROKER_REFUSALS_BEFORE_REJECTING,
        )

    # -- paho's thread ----------------------------------------------------------------------

    def _make_client(
        self, client_id: str, username: str | None, password: str | None
    ) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            client.username_pw_set(username, password)
        if self._address.tls:
            # The broker's certificate against tls.ca_file (else the system's CAs), its name
            # checked, TLS 1.2 at least. Raises BrokerTlsError for a file that cannot be used.
            client.tls_set_context(client_tls_context(self._tls))
        client.will_set(self._status_topic, self._will_payload(), qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        client.on_connect = _logging_failures(self._on_connect)
        client.on_connect_fail = _logging_failures(self._on_connect_fail)
        client.on_disconnect = _logging_failures(self._on_disconnect)
        client.on_subscribe = _logging_failures(self._on_subscribe)
        client.on_publish = _logging_failures(self._on_publish)
        client.on_message = _logging_failures(self._on_message)
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        properties: Any = None,
        *_: Any,
    ) -> None:
        if reason.is_failure:
            problem = connack_problem(reason)
            log.warning("broker refused the connection: %s (%s)", reason, problem.value)
            self._report_problem(problem)
            return
        send_at_once(client.socket())  # events and their acks without Nagle's delay
        # clean_start drops the session, subscriptions included: subscribe on every connect.
        client.subscribe(self._ack_topic, qos=1)
        if self._policy_topic is not None:
            client.subscribe(self._policy_topic, qos=1)
        if self._on_command is not None:
            client.subscribe(self._command_topic, qos=1)
        if self._on_preview_request is not None:
            client.subscribe(self._preview_request_topic, qos=1)
        self._broker_max_packet = getattr(properties, "MaximumPacketSize", None)
        with self._lock:
            self._connected = True
            payload = self._status_payload("online")
        client.publish(self._status_topic, payload, qos=1, retain=True)
        log.info("online at %s", self._broker_url)
        self._notify(_LinkChanged(True, getattr(properties, "MaximumPacketSize", None)))
        self._report_connection(True)

    def _on_connect_fail(self, *_: Any) -> None:
        error = sys.exc_info()[1]  # paho calls this while handling the error
        log.warning("broker %s: %s; retrying", self._broker_url, connect_failure(error))
        self._report_problem(link_problem(error))

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: ReasonCode, *_: Any
    ) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
        if not was_connected:
            return
        level = logging.INFO if self._stopping.is_set() else logging.WARNING
        log.log(level, "offline: %s", reason)
        self._notify(_LinkChanged(up=False))
        self._report_connection(False)

    def _on_subscribe(
        self, _client: Any, _userdata: Any, _mid: int, reasons: list[ReasonCode], *_: Any
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error(
                    "broker refused a subscription (%s): the outbox is stuck, or the site "
                    "policy (or the dashboard's commands) do not reach this gate",
                    reason,
                )

    def _on_publish(
        self, _client: Any, _userdata: Any, mid: int, reason: ReasonCode, *_: Any
    ) -> None:
        self._notices.put(_BrokerAnswered(mid, reason))

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._command_topic:
            if self._on_command is not None:
                self._on_command(bytes(message.payload))
            return
        if message.topic == self._preview_request_topic:
            if self._on_preview_request is not None:
                self._on_preview_request(bytes(message.payload))
            return
        if message.topic != self._ack_topic:
            if self._on_policy_message is not None and message.topic.startswith(SITES_PREFIX):
                self._on_policy_message(message.topic, bytes(message.payload))
            return
        try:
            ack = parse_message(Topic.ACK, bytes(message.payload))
        except MessageError as exc:
            log.warning("ignored a malformed ack: %s", exc)
            return
        self._notify(_Acked(tuple(ack.event_ids), tuple(ack.rejected)))

    def _notify(self, notice: _Notice) -> None:
        self._notices.put(notice)
        self._wake.set()

    def _report_connection(self, online: bool) -> None:
        if self._on_connection_change is None:
            return
        try:
            self._on_connection_change(online)
        except Exception:
            log.exception("on_connection_change(%s) failed", online)

    def _report_problem(self, problem: LinkState) -> None:
        if self._on_link_problem is None:
            return
        try:
            self._on_link_problem(problem)
        except Exception:
            log.exception("on_link_problem(%s) failed", problem)

    def _status_payload(self, state: Literal["online", "offline"]) -> bytes:
        """The status now (the caller holds self._lock)."""
        self._published_policy_version = version = self._policy_version()
        return Status(
            policy_version=version,
            state=state,
            ts=self._wall_clock(),
            version=self._version,
            boot_id=self._boot_id,
            faults=list(self._faults),
            **self._placement.status_fields(),
        ).to_json()

    def _will_payload(self) -> bytes:
        # The broker sends it at a time nobody knows yet, and faults may have changed by then.
        return Status(
            state="offline",
            version=self._version,
            boot_id=self._boot_id,
            **self._placement.status_fields(),
        ).to_json()


@dataclass(frozen=True)
class Placement:
    """Where the gate stands (its config's site_id, location, direction), told in its status so
    the dashboard can show and count it."""

    site_id: str = ""
    location: str = ""
    direction: Direction | None = None

    def status_fields(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "location": self.location, "direction": self.direction}


def _publish_packet_size(topic: str, payload: bytes) -> int:
    """Bytes of a QoS 1 MQTT v5 PUBLISH without properties, as the broker's limit counts them."""
    # topic length and topic, packet id, properties length (0), payload
    remaining = 2 + len(topic.encode("utf-8")) + 2 + 1 + len(payload)
    length_bytes = 1 + (remaining >= 128) + (remaining >= 16_384) + (remaining >= 2_097_152)
    return 1 + length_bytes + remaining
