"""The wire contract between gates and the collector (version v1).

Everything that crosses MQTT is defined here once: topic names, the JSON messages, the closed
set of verdicts, and the broker URL both sides are configured with. Device and server both import
this package; neither defines its own copy. Readers ignore unknown fields, so a newer gate can
talk to an older collector.
"""

from protocol.broker_url import (
    BrokerAddress,
    BrokerUrlError,
    CredentialsInBrokerUrl,
    parse_broker_url,
)
from protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    Event,
    Status,
    Telemetry,
    parse_message,
)
from protocol.topics import (
    PREFIX,
    VERSION,
    Topic,
    device_topic,
    parse_topic,
)
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PREFIX",
    "VERSION",
    "Ack",
    "BrokerAddress",
    "BrokerUrlError",
    "CredentialType",
    "CredentialsInBrokerUrl",
    "Direction",
    "Event",
    "Reason",
    "Status",
    "Telemetry",
    "Topic",
    "VerdictStatus",
    "device_topic",
    "parse_broker_url",
    "parse_message",
    "parse_topic",
]
