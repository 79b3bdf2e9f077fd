"""The collector: gate messages in over MQTT, into the store, and an ack back after the commit.

Delivery works like this (see docs/architecture.md):
- The collector keeps a persistent MQTT v5 session (clean_start=False plus a SessionExpiryInterval),
  so the broker queues QoS 1 events for it while it is down.
- Messages are acknowledged by hand (`manual_ack=True`): the PUBACK for an events message goes out
  only after the database commit, so a collector killed before the commit gets it again.
- After the commit it publishes an application `Ack` naming the stored event ids to the gate's
  .../ack topic. Only that ack lets a gate drop an event from its outbox; the gate resends
  anything not acked, and the store keeps each event_id once, so a resend is always safe.
- A message that cannot be accepted is dead-lettered with a reason and still PUBACKed, so the
  broker does not redeliver it forever. Nothing a message contains can stop the collector.
- A refused event that names a well-formed event_id is also answered, once its dead letter is
  stored: an `Ack` to the TOPIC's gate (never to one named inside the payload) lists it in
  `rejected` with the reason. Else the gate would keep it in flight and resend it forever, and
  enough such events would fill its in-flight window so that nothing else got through. A
  resend of the same refused payload adds no dead-letter row (Store.dead_letter counts it).

`MessageHandler` holds what is done with messages and takes a list, so a batcher (many events
per commit and per ack) can be put in front of it without changing it.

Untrusted text (topics, details of refused payloads) reaches the log only through
protocol.text.printable, so a payload cannot start a fake log line. A flood of bad messages
cannot flood the log either: one warning per dead-letter reason per minute, the rest at debug;
the counters, logged every minute, and the dead_letters table keep the full count.
Failpoints (server/failpoints.py) let the crash tests kill the process at an exact step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocol import Ack, Event, Topic, device_topic, parse_broker_url, parse_message, parse_topic
from protocol.messages import REJECTION_DETAIL_MAX_CHARS, MessageError, Rejection, event_id_of
from protocol.text import printable
from protocol.topics import subscription
from server.failpoints import AFTER_ACK, AFTER_COMMIT, BEFORE_COMMIT, Failpoints
from server.store import Store

log = logging.getLogger("gatescan.collector")

# Ids per ack message: well under Ack's limit of 10,000, and a small payload.
ACK_CHUNK = 1000
_SUBSCRIBED_KINDS = (Topic.EVENTS, Topic.STATUS, Topic.TELEMETRY)
# Of a payload refused as too large, the dead letter keeps this much: enough to see what it was.
TOO_LARGE_KEEP_BYTES = 4096
DEAD_LETTER_WARNING_INTERVAL_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CollectorCounters:
    """What the collector has done since it started; read by logs and tests."""

    received: int = 0  # events messages received
    stored: int = 0  # events newly committed
    duplicates: int = 0  # events already stored (resends): acked again, not stored again
    dead_lettered: int = 0  # messages of any kind refused and kept in dead_letters
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)  # dead_lettered by reason
    acks_sent: int = 0  # application ack messages published (rejections included)
    rejected: int = 0  # refused events named back to their gate in an ack's `rejected`
    errors: int = 0  # handling failures (e.g. the database refused a commit): nothing was acked


@dataclass(frozen=True)
class IncomingMessage:
    """One MQTT message as the handler sees it, without paho's types."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class MessageHandler:
    """Validate, store, then ack. Never raises: a bad message is dead-lettered and logged."""

    def __init__(
        self,
        *,
        store: Store,
        send_ack: Callable[[str, Ack], bool],
        clock: Callable[[], datetime] = utc_now,
        counters: CollectorCounters | None = None,
        failpoints: Failpoints | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._send_ack = send_ack
        self._clock = clock
        self.counters = counters or CollectorCounters()
        self._failpoints = failpoints or Failpoints()
        self._monotonic = monotonic
        self._last_warning: dict[str, float] = {}  # dead-letter reason -> when last logged

    def handle(self, messages: Sequence[IncomingMessage]) -> None:
        """Handle a batch; its events are stored in one transaction and acked per device."""
        events: list[IncomingMessage] = []
        for message in messages:
            kind = _topic_kind(message.topic)
            if kind is Topic.EVENTS:
                events.append(message)
            else:
                self._guarded([message], partial(self._handle_device_message, message, kind))
        if events:
            self._guarded(events, partial(self._handle_events, events))

    def _guarded(self, messages: list[IncomingMessage], work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # the last line of defence: no message may stop the collector
            log.exception("unexpected error while handling %d message(s)", len(messages))
            self.counters.errors += 1
            for message in messages:
                self._dead_letter(message, "error", f"{type(exc).__name__}: {exc}")

    def _handle_events(self, messages: list[IncomingMessage]) -> None:
        received_at = self._clock()
        self.counters.received += len(messages)
        log.debug("received %d events message(s)", len(messages))
        accepted: list[tuple[IncomingMessage, Event]] = []
        rejections: dict[str, list[Rejection]] = {}  # topic's device id -> its refused events
        for message in messages:
            event = self._accept_event(message, received_at, rejections)
            if event is not None:
                accepted.append((message, event))
        for device_id, rejected in rejections.items():
            self._send_chunked(device_id, [], rejected)
            self.counters.rejected += len(rejected)
        if not accepted:
            return
        events = [event for _, event in accepted]
        try:
            result = self._store.add_events(
                events, received_at, before_commit=partial(self._failpoints.reached, BEFORE_COMMIT)
            )
        except Exception as exc:
            # No ack: the gates keep these events and resend them, and a resend is stored then.
            log.exception("could not commit %d event(s)", len(events))
            self.counters.errors += 1
            for message, _ in accepted:
                self._dead_letter(message, "error", f"commit failed: {type(exc).__name__}: {exc}")
            return
        self.counters.stored += len(result.new)
        self.counters.duplicates += result.duplicate_count
        log.debug("stored %d new, %d duplicate events", len(result.new), result.duplicate_count)
        self._failpoints.reached(AFTER_COMMIT)
        self._ack_per_device(events, set(result.ids))
        self._failpoints.reached(AFTER_ACK)

    def _accept_event(
        self,
        message: IncomingMessage,
        received_at: datetime,
        rejections: dict[str, list[Rejection]],
    ) -> Event | None:
        topic_device = _topic_device(message.topic)
        try:
            event: Event = parse_message(Topic.EVENTS, message.payload)
        except MessageError as exc:
            self._refuse_event(message, exc.reason, exc.detail, received_at, rejections)
            return None
        if event.device_id != topic_device:
            # A gate may only speak for itself (the broker's ACL enforces the topic, not the body).
            detail = f"topic names {topic_device!r}, payload names {event.device_id!r}"
            self._refuse_event(message, "device_mismatch", detail, received_at, rejections)
            return None
        return event

    def _refuse_event(
        self,
        message: IncomingMessage,
        reason: str,
        detail: str,
        received_at: datetime,
        rejections: dict[str, list[Rejection]],
    ) -> None:
        """Dead-letter a refused event, then note it for its topic's gate if it names its id.
        A dead letter not stored gets no answer: the gate's resend brings it back."""
        if not self._dead_letter(message, reason, detail, received_at):
            return
        event_id = event_id_of(message.payload)
        device_id = _topic_device(message.topic)
        if event_id is None or device_id is None:
            return
        clipped = detail[:REJECTION_DETAIL_MAX_CHARS]  # printable text already
        rejection = Rejection(event_id=event_id, reason=reason, detail=clipped)
        rejections.setdefault(device_id, []).append(rejection)

    def _ack_per_device(self, events: list[Event], stored_ids: set[str]) -> None:
        ids_by_device: dict[str, dict[str, None]] = {}
        for event in events:
            if event.event_id in stored_ids:
                ids_by_device.setdefault(event.device_id, {})[event.event_id] = None
        for device_id, ids in ids_by_device.items():
            self._send_chunked(device_id, list(ids), [])

    def _send_chunked(self, device_id: str, ids: list[str], rejected: list[Rejection]) -> None:
        for start in range(0, max(len(ids), len(rejected)), ACK_CHUNK):
            chunk = slice(start, start + ACK_CHUNK)
            if self._send_ack(device_id, Ack(event_ids=ids[chunk], rejected=rejected[chunk])):
                self.counters.acks_sent += 1

    def _handle_device_message(self, message: IncomingMessage, kind: Topic | None) -> None:
        received_at = self._clock()
        device_id = _topic_device(message.topic)
        if kind is Topic.STATUS and not message.payload:
            # An empty retained payload clears a status (a gate taken out of service).
            log.info("status of %s cleared", device_id)
            return
        if kind not in (Topic.STATUS, Topic.TELEMETRY) or device_id is None:
            self._dead_letter(message, "bad_topic", "not a gatescan device topic", received_at)
            return
        try:
            parsed = parse_message(kind, message.payload)
        except MessageError as exc:
            self._dead_letter(message, exc.reason, exc.detail, received_at)
            return
        if kind is Topic.STATUS:
            self._store.record_status(device_id, parsed, received_at)
        else:
            self._store.record_telemetry(device_id, parsed, received_at)

    def _dead_letter(
        self,
        message: IncomingMessage,
        reason: str,
        detail: str,
        received_at: datetime | None = None,
    ) -> bool:
        """Store (or count again) a refused message; False if the store refused it too."""
        self._log_dead_letter(message.topic, reason, detail)
        keep = TOO_LARGE_KEEP_BYTES if reason == "too_large" else len(message.payload)
        try:
            self._store.dead_letter(
                message.topic,
                message.payload,
                reason,
                detail,
                received_at or self._clock(),
                keep_bytes=keep,
            )
        except Exception:
            log.exception("could not store a dead letter from %s", printable(message.topic))
            return False
        self.counters.dead_lettered += 1
        self.counters.dead_letter_reasons[reason] += 1
        return True

    def _log_dead_letter(self, topic: str, reason: str, detail: str) -> None:
        now = self._monotonic()
        last = self._last_warning.get(reason)
        loud = last is None or now - last >= DEAD_LETTER_WARNING_INTERVAL_S
        if loud:
            self._last_warning[reason] = now
        log.log(
            logging.WARNING if loud else logging.DEBUG,
            "dead letter from %s: %s (%s)%s",
            printable(topic),
            reason,
            printable(detail),
            "; more of this reason within a minute are logged at debug level" if loud else "",
        )


def _topic_kind(topic: str) -> Topic | None:
    parsed = parse_topic(topic)
    return parsed[1] if parsed else None


def _topic_device(topic: str) -> str | None:
    parsed = parse_topic(topic)
    return parsed[0] if parsed else None


class Collector:
    """The MQTT side of the server: subscribes to every gate and hands messages to the handler."""

    def __init__(
        self,
        *,
        broker_url: str,
        store: Store,
        client_id: str = "gatescan-collector",
        username: str | None = None,
        password: str | None = None,
        session_expiry: int = 7 * 24 * 3600,
        clock: Callable[[], datetime] = utc_now,
        failpoints: Failpoints | None = None,
    ) -> None:
        """`failpoints`: None reads GATESCAN_FAILPOINTS (unset in production: inert), so the
        crash tests can arm the real `gatescan collector` process from its environment."""
        self._address = parse_broker_url(broker_url)
        self._session_expiry = session_expiry
        self.counters = CollectorCounters()
        if failpoints is None:
            failpoints = Failpoints.from_environment()
        if failpoints.active:
            log.warning("failpoints armed: %s", failpoints.active)
        self._handler = MessageHandler(
            store=store,
            send_ack=self._publish_ack,
            clock=clock,
            counters=self.counters,
            failpoints=failpoints,
        )
        self._subscribed = threading.Event()
        self._client = self._build_client(client_id, username, password)

    def _build_client(self, client_id: str, username: str | None, password: str | None) -> Any:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if self._address.tls:
            client.tls_set()  # the system's CA store; the broker's name is checked
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself, with backoff, after a loss."""
        properties = Properties(PacketTypes.CONNECT)
        # Without an expiry a v5 session ends at disconnect even with clean_start=False.
        properties.SessionExpiryInterval = self._session_expiry
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect; the session stays on the broker, which queues events until we return."""
        self._client.disconnect()
        self._client.loop_stop()
        self._subscribed.clear()

    def run_forever(self, stop_event: threading.Event, report_every: float = 60.0) -> None:
        """Run until stop_event is set, logging the counters now and then (for the CLI)."""
        self.start()
        try:
            while not stop_event.wait(report_every):
                log.info("collector: %s", self.counters)
        finally:
            self.stop()

    def wait_until_subscribed(self, timeout: float) -> bool:
        """True once the broker has granted every subscription on the current connection."""
        return self._subscribed.wait(timeout)

    # --- paho callbacks (run on paho's network thread) ----------------------------------------

    def _on_connect(
        self, client: Any, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        log.info("connected to the broker (session present: %s)", flags.session_present)
        # Subscribing again on a resumed session is harmless, and needed if it had expired.
        client.subscribe(
            [(subscription(kind), SubscribeOptions(qos=1)) for kind in _SUBSCRIBED_KINDS]
        )

    def _on_subscribe(
        self, _client: Any, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
            return
        log.info("subscribed to %s", ", ".join(subscription(kind) for kind in _SUBSCRIBED_KINDS))
        self._subscribed.set()

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._subscribed.clear()
        log.info("disconnected from the broker: %s", reason)

    def _on_message(self, client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            incoming = IncomingMessage(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                retain=bool(message.retain),
            )
            self._handler.handle([incoming])
        except Exception:
            log.exception("message on mid %d could not be handled", message.mid)
        finally:
            # After the commit (or the dead letter): the broker may now forget the message.
            if message.qos > 0:
                client.ack(message.mid, message.qos)

    def _publish_ack(self, device_id: str, ack: Ack) -> bool:
        info = self._client.publish(device_topic(device_id, Topic.ACK), ack.to_json(), qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Not fatal: the gate resends what is not acked, and we ack it then.
            log.warning("ack to %s not sent now: %s", device_id, mqtt.error_string(info.rc))
            return False
        return True
