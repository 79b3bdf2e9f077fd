"""The collector: gate messages in over MQTT, into the store in batches, acks back after commits.

Delivery works like this (see docs/architecture.md and docs/protocol.md):
- The collector keeps a persistent MQTT v5 session (clean_start=False plus a SessionExpiryInterval),
  so the broker queues QoS 1 events for it while it is down. It announces a receive window
  (ReceiveMaximum): the broker keeps that many messages in flight to it, enough to fill batches.
- paho's network thread only validates each message (server/collector/prepare.py) and hands it to
the writer thread (server/collector/writer.py) through a bounded queue; when the queue is full the
  network thread waits, so back-pressure reaches the broker and nothing is dropped.
- The writer commits a batch in one transaction, publishes one application `Ack` per gate (at
  QoS 0: a lost one costs a resend, see docs/protocol.md)
  naming the batch's events from it (and its refused events in `rejected`), and only then
  PUBACKs the batch's messages (`manual_ack=True`): a collector killed before that gets them
  again from the broker, and the store keeps each event_id once, so a resend is always safe.
- A message that cannot be accepted is dead-lettered (in the same commit) and still PUBACKed,
  so the broker does not redeliver it forever. Nothing a message contains can stop the collector.
- Each gate (the topic's device id) has limits, messages a second and bytes a minute
  (server/collector/limits.py): a message over them is dropped before it is parsed, stored
  nowhere and answered to no one, but PUBACKed with its batch; its gate resends it.

The collector's connection also carries the sites' policies to their gates
(server/collector/policy_publisher.py): `publish_retained` (QoS 1, retained) and `link_number`,
and a manager's commands to one gate (server/collector/commands.py): `send_command` (QoS 1).
With a preview sink (`set_preview_sink`, before `start`) it also carries the aim-and-focus
preview (protocol/preview/wire.py): requests to a gate (`send_preview_request`, QoS 1) and the
gates' frames to the sink (QoS 0, a plain subscription), which never reach the writer or the store.
One connection, not a second one: the broker takes a client id from its user name, and two
connections of the `collector` user would knock each other off.

Several collectors (server/collector/identity.py): each takes the gates' events as a member of an
MQTT v5 shared subscription (`$share/collectors/...`: the broker hands each event to one member),
with a client id of its own (generated per process unless given); status and telemetry reach
every collector. Only one of them publishes the sites' policies (`--no-publish-policy` on the
others: server/app.py).

Failpoints (server/collector/failpoints.py) let the crash tests kill the process at an exact step.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocol.broker_tls import BrokerTls, client_tls_context, connect_failure
from protocol.broker_url import parse_broker_url
from protocol.preview.wire import PREVIEW_SUBSCRIPTION, preview_device, preview_request_topic
from protocol.topics import Topic, device_topic, parse_topic
from server.collector.batch import MessageHandler, utc_now
from server.collector.client import IngestClient
from server.collector.command_mailbox import CommandSender, GateReplies
from server.collector.failpoints import Failpoints
from server.collector.identity import (
    DEFAULT_SHARE_GROUP,
    generated_client_id,
    session_expiry,
    subscriptions,
)
from server.collector.limits import DEFAULT_LIMITS, GateLimiter, GateLimits
from server.collector.prepare import CollectorCounters, IncomingMessage
from server.collector.sites import GateSites
from server.collector.stock_client import StockClient
from server.collector.writer import MAX_BATCH, QUEUE_CAPACITY, Delivery, IngestWriter
from server.store.database import Store
from server.store.gate_commands import GateCommands
from server.store.gates import GateRegistry

__all__ = ["Collector", "MqttClient"]

log = logging.getLogger("gatescan.collector")

_REPLY_SUFFIXES = (f"/{Topic.ANSWER.value}", f"/{Topic.LOGS.value}")

# QoS 1 messages the broker may have in flight to us, not yet PUBACKed: several batches, so the
# next batch is already arriving while one commits. (Without it Mosquitto sends 20 at a time.)
RECEIVE_WINDOW = 4000
# The network thread and the writer each do a system call between short bursts of Python (a
# recv, a send, an SQLite step, an fsync). With CPython's default switch interval of 5 ms, a
# thread back from one waits up to 5 ms for the GIL while the other computes, at every call (the
# "convoy effect"): at thousands of messages a second each batch's round then mostly waits. A
# shorter interval hands the GIL over sooner and shortens the round, so events wait less
# (bench/ingest_bench.py with 1,000 events in flight: about 1.5x the events per second). It is
# process-wide, which suits the collector's own process.
GIL_SWITCH_INTERVAL_S = 0.0005


class MqttClient(StrEnum):
    """Which paho client the collector connects with (`--mqtt-client`)."""

    TUNED = "tuned"  # IngestClient: paho with its read path and PUBACKs reworked (client.py)
    STOCK = "stock"  # StockClient: paho's public API only (stock_client.py)


class Collector:
    """The MQTT side of the server: subscribes to every gate, feeds the writer, acks back."""

    def __init__(
        self,
        *,
        broker_url: str,
        store: Store,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        session_expiry_s: int | None = None,
        share_group: str | None = DEFAULT_SHARE_GROUP,
        clock: Callable[[], datetime] = utc_now,
        failpoints: Failpoints | None = None,
        max_batch: int = MAX_BATCH,
        receive_window: int = RECEIVE_WINDOW,
        mqtt_client: MqttClient = MqttClient.TUNED,
        tls: BrokerTls | None = None,
        limits: GateLimits = DEFAULT_LIMITS,
        limits_clock: Callable[[], float] = time.monotonic,
        check_sites: bool = True,
    ) -> None:
        """`failpoints`: None reads GATESCAN_FAILPOINTS (unset in production: inert), so the
        crash tests can arm the real `gatescan collector` process from its environment.
        `limits`: each gate's (`limits_clock`, the limiter's monotonic clock, for tests).
        `check_sites`: refuse a registered gate's event that names another site (`wrong_site`).
        `client_id` None: one made for this process, its session short-lived and ended by a clean
        stop; `session_expiry_s` None: by the id (server/collector/identity.py). `share_group`:
        the events' shared subscription (None: every event to this collector)."""
        self._address = parse_broker_url(broker_url)
        self._tls = tls or BrokerTls()
        if self._tls.any_file and not self._address.tls:
            raise ValueError(f"TLS files given for {broker_url!r}, which is not mqtts://")
        self._ephemeral = client_id is None
        self.client_id = generated_client_id() if client_id is None else client_id
        self._session_expiry = session_expiry(not self._ephemeral, session_expiry_s)
        self._topics = subscriptions(share_group)
        self._receive_window = receive_window
        self.counters = CollectorCounters()
        if failpoints is None:
            failpoints = Failpoints.from_environment()
        if failpoints.active:
            log.warning("failpoints armed: %s", failpoints.active)
        self.limiter = None if limits.off else GateLimiter(limits, limits_clock)
        self.sites = GateSites(GateRegistry(store.engine)) if check_sites else None
        self._handler = MessageHandler(
            store=store,
            send_ack=self._publish_ack,
            clock=clock,
            counters=self.counters,
            failpoints=failpoints,
            limiter=self.limiter,
            sites=self.sites,
        )
        self._writer = IngestWriter(
            handler=self._handler,
            puback=self._puback,
            one_wakeup=self._client_one_wakeup,
            failpoints=failpoints,
            max_batch=max_batch,
            capacity=max(QUEUE_CAPACITY, max_batch),
        )
        self._connection = 0  # counts connections: a PUBACK goes only on the one it came on
        self._ack_topics: dict[str, bytes] = {}  # device id -> its ack topic (writer thread only)
        self._subscribed = threading.Event()
        self._refused: dict[int, str] = {}  # our QoS 1 publishes the broker refused, by mid
        self._mqtt_client = mqtt_client
        self._preview_sink: Callable[[str, bytes], object] | None = None
        self._client = self._build_client(mqtt_client, self.client_id, username, password)
        # Remote commands from the database to the gates, their answers and logs back.
        rows = GateCommands(store.engine)
        self.replies = GateReplies(rows, clock=clock)
        self.command_sender = CommandSender(
            rows, self.send_command, lambda: self.link_number() != 0, clock=clock
        )

    def _build_client(
        self, kind: MqttClient, client_id: str, username: str | None, password: str | None
    ) -> IngestClient | StockClient:
        client_class = IngestClient if kind is MqttClient.TUNED else StockClient
        client = client_class(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if self._address.tls:
            # The broker's certificate against tls.ca_file (else the system's CAs), its name
            # checked, TLS 1.2 at least. Raises BrokerTlsError for a file that cannot be used.
            client.tls_set_context(client_tls_context(self._tls))
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself, with backoff, after a loss."""
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._writer.start()
        self.replies.start()
        self.command_sender.start()
        if self.sites is not None:
            self.sites.start()
        properties = Properties(PacketTypes.CONNECT)
        # Without an expiry a v5 session ends at disconnect even with clean_start=False.
        properties.SessionExpiryInterval = self._session_expiry
        properties.ReceiveMaximum = self._receive_window
        address = self._address
        log.info(
            "connecting to %s://%s:%d on the %s MQTT client as %s",
            "mqtts" if address.tls else "mqtt",
            f"[{address.host}]" if ":" in address.host else address.host,
            address.port,
            self._mqtt_client.value,
            self.client_id,
        )
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Stop reading, commit and ack what was received, then disconnect. The session stays
        on the broker, which queues events until we return."""
        self.command_sender.stop()
        self._client.loop_stop()  # no more messages; what the writer sends now goes out inline
        self._writer.stop()
        self.replies.stop()
        if self._ephemeral:
            # No run will take this session up again: end it, so the broker stops queueing a
            # share of the events for it (MQTT v5 lets a DISCONNECT lower the expiry to 0).
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
            self._client.disconnect(properties=properties)
        else:
            self._client.disconnect()
        self._subscribed.clear()
        if self.sites is not None:
            self.sites.stop()

    def queued(self) -> int:
        """Messages validated and waiting for the writer's next batch."""
        return self._writer.queued()

    def link_number(self) -> int:
        """0 while not connected (and subscribed); else a number that changes with every new
        connection, so a publisher knows to publish everything again after a reconnect."""
        return self._connection if self._subscribed.is_set() else 0

    def entries_stored(self) -> int:
        return self.counters.stored

    def publish_retained(self, topic: str, payload: bytes) -> RetainedPublish:
        """Publish at QoS 1, retained (an empty payload clears the topic's retained message); a
        handle to wait for the broker's PUBACK with."""
        return RetainedPublish(self, self._client.publish(topic, payload, qos=1, retain=True))

    def send_command(self, device_id: str, payload: bytes) -> RetainedPublish:
        """Publish a command (protocol/messages.py `Command`) to one gate at QoS 1, never
        retained: a gate that is not connected now never gets it (its session is clean, and
        it refuses a stale one anyway). A handle to wait for the broker's PUBACK with."""
        topic = device_topic(device_id, Topic.COMMAND)
        return RetainedPublish(self, self._client.publish(topic, payload, qos=1, retain=False))

    def set_preview_sink(self, sink: Callable[[str, bytes], object]) -> None:
        """Hand every gate's preview frames (device id, payload) to `sink`, on paho's thread;
        call before `start`. They are never stored: only the sink sees them."""
        self._preview_sink = sink
        if PREVIEW_SUBSCRIPTION not in self._topics:
            self._topics = [*self._topics, PREVIEW_SUBSCRIPTION]

    def send_preview_request(self, device_id: str, payload: bytes) -> RetainedPublish:
        """A `PreviewRequest` to one gate, QoS 1, never retained (the gate refuses a stale one)."""
        topic = preview_request_topic(device_id)
        return RetainedPublish(self, self._client.publish(topic, payload, qos=1, retain=False))

    def wait_until_subscribed(self, timeout: float) -> bool:
        """True once the broker has granted every subscription on the current connection."""
        return self._subscribed.wait(timeout)

    # --- paho callbacks (run on paho's network thread) ----------------------------------------

    def _on_connect(
        self, client: Any, _userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self._connection += 1
        log.info("connected to the broker (session present: %s)", flags.session_present)
        # Subscribing again on a resumed session is harmless, and needed if it had expired.
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self._topics])

    def _on_connect_fail(self, *_: Any) -> None:
        why = connect_failure(sys.exc_info()[1])  # paho calls this while handling the error
        log.warning("broker %s:%d: %s; retrying", self._address.host, self._address.port, why)

    def _on_subscribe(
        self, _client: Any, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        if any(r.is_failure for r in reasons) and len(reasons) == len(self._topics):
            preview = [r for t, r in zip(self._topics, reasons, strict=True)
                       if t == PREVIEW_SUBSCRIPTION and r.is_failure]  # fmt: skip
            if preview:  # an older broker's rights: no preview, everything else as before
                log.warning("broker refused the preview's frames (%s): no preview", preview[0])
                reasons = [r for t, r in zip(self._topics, reasons, strict=True)
                           if t != PREVIEW_SUBSCRIPTION]  # fmt: skip
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
            return
        # The plain topic first ("subscribed to gatescan/v1/devices/+/events": what the tests and
        # a technician look for), then the share it is taken through.
        plain = [topic.split("/", 2)[2] if topic.startswith("$share/") else topic
                 for topic in self._topics]  # fmt: skip
        shared = [topic for topic in self._topics if topic.startswith("$share/")]
        log.info(
            "subscribed to %s%s",
            ", ".join(plain),
            f" (shared: {', '.join(shared)})" if shared else "",
        )
        self._subscribed.set()

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._subscribed.clear()
        log.info("disconnected from the broker: %s", reason)

    def _on_publish(
        self, _client: Any, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:  # e.g. not authorized: the ACL lacks the collector's right
            self._refused[mid] = str(reason)

    def _on_message(self, client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._preview_sink is not None:
            device_id = preview_device(message.topic)
            if device_id is not None:
                try:
                    self._preview_sink(device_id, bytes(message.payload))
                except Exception:
                    log.exception("a preview frame of %s not handled", device_id)
                if message.qos > 0:  # a gate sends at QoS 0; anything else is acked and dropped
                    client.ack(message.mid, message.qos)
                return
        if message.topic.endswith(_REPLY_SUFFIXES):  # a gate's answer or logs: not a batch's
            self._on_reply(client, message)
            return
        try:
            incoming = IncomingMessage(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                retain=bool(message.retain),
            )
            prepared = self._handler.prepare(incoming)
            self._writer.submit(Delivery(prepared, message.mid, message.qos, self._connection))
        except Exception:
            # Not stored: PUBACK it all the same, or it would hold a slot of the window until
            # the next connection (an event comes back anyway: its gate resends it).
            log.exception("message on mid %d could not be handled", message.mid)
            if message.qos > 0:
                client.ack(message.mid, message.qos)

    def _on_reply(self, client: Any, message: mqtt.MQTTMessage) -> None:
        parsed = parse_topic(message.topic)
        try:
            if parsed is not None and (
                self.limiter is None or self.limiter.allow(parsed[0], len(message.payload))
            ):
                self.replies.handle(parsed[0], parsed[1], bytes(message.payload))
        except Exception:
            log.exception("a gate's reply on mid %d could not be handled", message.mid)
        finally:
            if message.qos > 0:
                client.ack(message.mid, message.qos)

    # --- called by the writer thread, after a batch's commit ----------------------------------

    def _client_one_wakeup(self) -> AbstractContextManager[None]:
        return self._client.one_wakeup()

    def _puback(self, batch: Sequence[Delivery]) -> None:
        connection = self._connection
        # A message from an earlier connection is redelivered on this one (same session): that
        # copy is PUBACKed when its own batch is committed. (We subscribe at QoS 1: no QoS 2.)
        mids = [d.mid for d in batch if d.qos == 1 and d.connection == connection]
        self._client.ack_many(mids)

    def _publish_ack(self, device_id: str, payload: bytes) -> bool:
        """At QoS 0 (docs/protocol.md, "Why acks travel at QoS 0"): a lost ack costs the gate a
        resend, which is acked again; a QoS 1 ack would cost the collector, the broker and the
        gate a PUBACK and its bookkeeping for every ack, and acks are about one per event when
        a site has many gates."""
        topic = self._ack_topics.get(device_id)
        if topic is None:
            topic = self._ack_topics[device_id] = device_topic(device_id, Topic.ACK).encode()
        rc = self._client.publish_qos0(topic, payload)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Not fatal: the gate resends what is not acked, and we ack it then.
            log.warning("ack to %s not sent now: %s", device_id, mqtt.error_string(rc))
            return False
        return True


class RetainedPublish:
    """One QoS 1 publish of `Collector.publish_retained` (or `send_command`), until the broker
    acknowledges it."""

    def __init__(self, collector: Collector, info: mqtt.MQTTMessageInfo) -> None:
        self._collector = collector
        self._info = info

    def wait(self, timeout: float) -> str | None:
        """None once the broker took it; else why not (not connected, refused, no answer)."""
        refused = self._collector._refused
        try:
            self._info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            return str(exc)
        if not self._info.is_published():
            refused.pop(self._info.mid, None)
            return f"no PUBACK within {timeout:.0f} s"
        reason = refused.pop(self._info.mid, None)
        return None if reason is None else f"the broker refused it: {reason}"
