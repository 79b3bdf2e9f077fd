"""MQTT topic names: gatescan/v1/devices/{device_id}/{kind}."""

import re
from enum import StrEnum

VERSION = "v1"
PREFIX = f"gatescan/{VERSION}/devices"

# A device id is also an MQTT topic level and a broker user name: keep it to safe characters.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


class Topic(StrEnum):
    STATUS = "status"  # device -> all, retained; last will says offline
    EVENTS = "events"  # device -> collector, QoS 1
    TELEMETRY = "telemetry"  # device -> all, QoS 0, periodic
    ACK = "ack"  # collector -> device, QoS 1
    COMMAND = "command"  # collector -> device, QoS 1, not retained: do this now (or never)
    ANSWER = "answer"  # device -> collector, QoS 1: what became of a command (added within v1)
    LOGS = "logs"  # device -> collector, QoS 0: warnings and errors, rate-limited (within v1)


def is_valid_device_id(device_id: str) -> bool:
    return bool(_DEVICE_ID.match(device_id))


def device_topic(device_id: str, kind: Topic) -> str:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}: use letters, digits, '.', '_', '-'")
    return f"{PREFIX}/{device_id}/{kind.value}"


def subscription(kind: Topic) -> str:
    """The wildcard a collector subscribes to for one kind of message from every device."""
    return f"{PREFIX}/+/{kind.value}"


def parse_topic(topic: str) -> tuple[str, Topic] | None:
    """Split a topic into (device_id, kind); None when it is not one of ours."""
    head, _, rest = topic.rpartition("/")
    prefix, _, device_id = head.rpartition("/")
    if prefix != PREFIX or not is_valid_device_id(device_id):
        return None
    try:
        return device_id, Topic(rest)
    except ValueError:
        return None
