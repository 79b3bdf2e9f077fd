"""paho's MQTT client, with the read path and PUBACKs of a subscriber taking thousands of
messages a second: what the collector connects with.

Measured on the collector (bench/ingest_bench.py), stock paho 2.x spends most of its time per
message on work the collector does not need:

- it reads each packet through a state machine in Python with several `recv()` calls (one per
  byte of the fixed header, then the rest), each a system call that also hands the GIL to the
  writer thread, and reads one packet per `select()`;
- it decodes the MQTT v5 properties of every PUBLISH into a `Properties` object (the collector
  reads none; topic aliases are off, as paho announces no TopicAliasMaximum);
- each manual PUBACK, and each publish from another thread, is its own wake-up of the network
  thread (a write to its socket pair) and its own `send()`;
- each publish makes an MQTTMessageInfo (a threading.Condition), and each QoS 0 publish calls
  on_publish once written;
- at each PUBACK for one of our QoS 1 publishes it builds a ReasonCode and a Properties object.

`IngestClient` keeps paho for everything else (connecting, TLS, keepalive, reconnects, the
session, QoS 1 publishing and its in-flight window) and changes exactly these:

- one buffered `recv()` of up to 256 KiB serves every packet it holds, a whole packet in the
  buffer is taken in one slice, and `loop_read` goes on until the buffer is empty;
- a QoS 0/1 PUBLISH is decoded without its properties (`message.properties` is None; anything
  else, a topic alias or a malformed packet, goes to paho's own decoder), and goes straight to
  `on_message` when no topic-specific callback is registered;
- `ack_many` queues the PUBACKs of a whole batch as one packet, `publish_qos0` queues a QoS 0
  PUBLISH as raw bytes (the collector's acks), within `one_wakeup()` the packets another thread
  queues wake the network thread once, and whole packets waiting together go out in one
  `send()`;
- a plain "success" PUBACK is decoded to shared constants (the benchmark's simulated gates
  publish with this client too);
- its TCP socket sends each packet at once (TCP_NODELAY): with Nagle's algorithm a batch's acks
  could wait for the broker to acknowledge the previous send at TCP level.

It relies on paho internals (`_sock_recv`, `_packet_read`, `_packet_handle`, `_handle_publish`,
`_handle_pubackcomp`, `_do_on_publish`, `_packet_queue`, `_packet_write`, `_sock`,
and the state they use), stable through paho 2.x; pyproject pins paho-mqtt < 3, and
tests/server/collector/test_client.py runs it against a real Mosquitto.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MessageState, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol.transport import send_at_once

_READ_SIZE = 256 * 1024
_PUBACK = int(mqtt.PUBACK)
_PUBLISH = int(mqtt.PUBLISH)
_DISCONNECT = int(mqtt.DISCONNECT)
_JOIN_MAX = 4096  # packets per send()
_PUBACK_PACKET = struct.Struct("!BBH")
_PUBLISH_QOS0 = bytes([_PUBLISH])  # fixed header of a PUBLISH: QoS 0, not dup, not retained
_MAX_REMAINING_LENGTH = 268_435_455  # a v5 PUBACK with reason "success" omitted: 4 bytes
# What follows a PUBACK's packet id when it has no properties -> the reason paho decodes from it.
_PLAIN_PUBACKS = {
    tail: ReasonCode(PacketTypes.PUBACK, identifier=code)
    for code in (0x00, 0x10)  # success; no matching subscribers (a success too)
    for tail in ((bytes([code]), bytes([code, 0])) if code else (b"", b"\x00", b"\x00\x00"))
}
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)


class IngestClient(mqtt.Client):
    """A paho Client with buffered reads, lean PUBLISH decoding and batched PUBACKs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_at = 0
        self._quiet_thread: int | None = None  # queues packets without waking the loop
        self._topic_callbacks = False  # message_callback_add used: paho's matcher decides

    # --- reading -------------------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        buffer, at = self._read_buffer, self._read_at
        if at >= len(buffer):
            # paho's own recv, with its TLS and error handling; it raises BlockingIOError
            # when nothing is there, as the caller expects.
            buffer, at = super()._sock_recv(_READ_SIZE), 0
            if not buffer:
                self._read_buffer, self._read_at = b"", 0
                return buffer  # the connection was closed
        chunk = buffer[at : at + bufsize]
        self._read_buffer, self._read_at = buffer, at + len(chunk)
        return chunk

    def _packet_read(self) -> MQTTErrorCode:
        # A whole packet is in the buffer and none is half read: take it in one slice instead of
        # paho's byte-by-byte state machine (anything else: paho's own, which reads the rest).
        buffer, at = self._read_buffer, self._read_at
        if self._in_packet["command"] != 0 or len(buffer) - at < 2 or buffer[at] == 0:
            return super()._packet_read()
        length, body = _variable_byte_integer(buffer, at + 1)
        if length < 0 or body + length > len(buffer):
            return super()._packet_read()
        self._read_at = body + length
        self._in_packet["command"] = buffer[at]
        self._in_packet["remaining_length"] = length
        # bytes rather than paho's bytearray: every decoder of paho takes either.
        self._in_packet["packet"] = buffer[body : body + length]  # type: ignore[typeddict-item]
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _empty_in_packet()
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        return rc

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every packet already read before going back to select()."""
        while True:
            rc = super().loop_read(max_packets)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._read_at >= len(self._read_buffer):
                return rc

    def _reset_read_buffer(self) -> None:
        self._read_buffer, self._read_at = b"", 0

    def reconnect(self) -> MQTTErrorCode:
        # connect() and paho's automatic reconnects come here.
        self._reset_read_buffer()  # bytes of a lost connection mean nothing on the next
        rc = super().reconnect()
        send_at_once(self._sock)  # no Nagle delay on this connection
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if self._protocol != MQTTProtocolVersion.MQTTv5 or qos > 1 or len(packet) < 3:
            return super()._handle_publish()
        topic_end = 2 + int.from_bytes(packet[0:2], "big")
        at = topic_end + (2 if qos else 0)
        properties_length, at = _variable_byte_integer(packet, at)
        if topic_end == 2 or properties_length < 0 or at + properties_length > len(packet):
            return super()._handle_publish()  # a topic alias, or malformed: paho decides
        # MQTTMessage's __init__ makes an MQTTMessageInfo (a threading.Condition) that only a
        # message being sent needs: here every field is set directly instead.
        message = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)
        message.timestamp = 0.0
        message.state = MessageState.MQTT_MS_INVALID
        message.mid = int.from_bytes(packet[topic_end : topic_end + 2], "big") if qos else 0
        message._topic = bytes(packet[2:topic_end])
        message.qos = qos
        message.dup = bool(header & 0x08)
        message.retain = bool(header & 0x01)
        message.payload = bytes(packet[at + properties_length :])
        message.properties = None
        message.info = None  # type: ignore[assignment]
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # --- publishing -----------------------------------------------------------------------------

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        # The broker's PUBACK of one of our QoS 1 publishes. For an accepted one Mosquitto sends a
        # packet id, a reason code (0x00 success, or 0x10 no subscriber) and no properties;
        # paho would build a ReasonCode and a Properties object for each.
        packet = self._in_packet["packet"]
        reason = _PLAIN_PUBACKS.get(bytes(packet[2:]))
        if cmd != "PUBACK" or self._protocol != MQTTProtocolVersion.MQTTv5 or reason is None:
            return super()._handle_pubackcomp(cmd)
        mid = int.from_bytes(packet[:2], "big")
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # --- writing ---------------------------------------------------------------------------------

    def _packet_write(self) -> MQTTErrorCode:
        # Join the packets waiting at the head of the queue into one `send()`: a batch's acks
        # and PUBACKs go out in one system call, not one each. Only packets paho does nothing
        # with once written are joined (not a QoS 0 PUBLISH, which calls on_publish, nor a
        # DISCONNECT, which closes the socket), and only whole ones.
        out = self._out_packet
        if len(out) > 1 and out[0]["pos"] == 0 and _joinable(out[0]):
            parts: list[bytes | bytearray] = []
            while out and out[0]["pos"] == 0 and _joinable(out[0]) and len(parts) < _JOIN_MAX:
                parts.append(out.popleft()["packet"])
            joined = b"".join(parts)
            out.appendleft(
                {
                    "command": _PUBACK,
                    "mid": 0,
                    "qos": 1,
                    "pos": 0,
                    "to_process": len(joined),
                    "packet": joined,
                    "info": None,
                }
            )
        return super()._packet_write()

    # --- writing from another thread ------------------------------------------------------------

    @contextmanager
    def one_wakeup(self) -> Iterator[None]:
        """Within the block, packets this thread queues (publishes, PUBACKs) do not each wake
        the network thread (a system call, and a hand-over of the GIL, per packet): it is woken
        once, at the end, and writes them all."""
        self._quiet_thread = threading.get_ident()
        try:
            yield
        finally:
            self._quiet_thread = None
            self._wake_loop()

    def loop_stop(self) -> MQTTErrorCode:
        # paho's network thread sees the stop only when its select() returns, up to a second
        # later: wake it now.
        if self._thread is not None:
            self._thread_terminate = True
            self._wake_loop()
        return super().loop_stop()

    def _wake_loop(self) -> None:
        wake = self._sockpairW
        if wake is not None:
            # Full of wake-ups already, or closed by a reconnect (which wakes the loop anyway).
            with suppress(OSError):
                wake.send(b"0")

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        me, loop = threading.get_ident(), self._thread
        if loop is None or me not in (self._quiet_thread, loop.ident):
            return super()._packet_queue(command, packet, mid, qos, info)
        # What paho's own _packet_queue appends, without its wake-up: the network thread itself
        # (sending the next queued publish at a PUBACK) writes it on its next turn anyway.
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        self._topic_callbacks = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # With no topic-specific callbacks (the collector has none), go straight to on_message
        # rather than through paho's topic matcher and its locks.
        on_message = self.on_message
        if self._topic_callbacks or on_message is None:
            return super()._handle_on_message(message)
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:  # as paho does: log, and raise unless told not to
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        return None

    # --- acknowledging -------------------------------------------------------------------------

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """PUBACK these QoS 1 messages (manual_ack=True) in one write, in the order given."""
        if not self._manual_ack or not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._queue_raw(b"".join(_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids))

    # --- publishing at QoS 0 ------------------------------------------------------------------

    def publish_qos0(self, topic: bytes, payload: bytes) -> MQTTErrorCode:
        """Publish at QoS 0, not retained, without properties: what `publish(topic, payload)`
        sends, as raw bytes queued like a PUBACK, without paho's MQTTMessageInfo (a
        threading.Condition each) nor its on_publish call. MQTT_ERR_NO_CONN when not connected
        (the message is dropped, as paho drops a QoS 0 publish then). `topic` is a plain topic
        name (no wildcard), UTF-8 encoded."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if not 0 < len(topic) <= 0xFFFF:
            raise ValueError(f"a topic name has 1 to 65,535 bytes, not {len(topic)}")
        properties = b"\x00" if self._protocol == MQTTProtocolVersion.MQTTv5 else b""
        length = 2 + len(topic) + len(properties) + len(payload)
        if length > _MAX_REMAINING_LENGTH:
            raise ValueError(f"a {len(payload)}-byte payload does not fit an MQTT packet")
        return self._queue_raw(
            b"".join(
                (
                    _PUBLISH_QOS0,
                    _variable_byte_integer_bytes(length),
                    len(topic).to_bytes(2, "big"),
                    topic,
                    properties,
                    payload,
                )
            )
        )

    def _queue_raw(self, packets: bytes) -> MQTTErrorCode:
        # Whole packets as one out-packet: paho writes it as it writes any packet, and does
        # nothing after a PUBACK is written (the command it is queued under).
        return self._packet_queue(_PUBACK, packets, 0, 0)


def _joinable(packet: Any) -> bool:
    command = packet["command"] & 0xF0
    if command == _PUBLISH:
        return bool(packet["qos"])
    return command != _DISCONNECT


def _empty_in_packet() -> Any:
    """paho's state of a packet not yet begun (as its _packet_read leaves it)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


def _variable_byte_integer_bytes(value: int) -> bytes:
    """An MQTT Variable Byte Integer (a packet's remaining length), 1 to 4 bytes."""
    out = bytearray()
    while True:
        value, byte = divmod(value, 128)
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _variable_byte_integer(data: bytes | bytearray, at: int) -> tuple[int, int]:
    """(value, position after it); value -1 if it runs past the end or past 4 bytes."""
    value, shift = 0, 0
    for position in range(at, min(at + 4, len(data))):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position + 1
        shift += 7
    return -1, at
