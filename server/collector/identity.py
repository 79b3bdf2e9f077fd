"""Who a collector is on the broker, when several collectors share one site's gates.

- Its client id: given (`--client-id`, server.toml's `client_id`), or else made for this process
  (`generated_client_id`: host name, process id and a random suffix), so two processes with the
  same settings on one machine never take each other's session. A site's broker takes each
  client's user name as its id (`use_username_as_clientid`): there each collector needs a broker
  user of its own (docs/operations.md, "Several collectors").
- Its session: persistent, so the broker queues events while it is away. A given id is resumed
  by the next run, which receives what was queued: 7 days. A generated id is never used again:
  its session expires soon after the process is gone (EPHEMERAL_SESSION_EXPIRY_S), and a clean
  stop ends it at once, so the broker stops queueing a share of the events for a member that
  will not come back (the gates resend what was queued there: docs/protocol.md, "Delivery").
- Its share of the events: every collector subscribes to the gates' events as a member of one
  MQTT v5 shared subscription (`$share/GROUP/...`), and the broker hands each event to one
  member. Status and telemetry are not shared (see `subscriptions`).
"""

from __future__ import annotations

import os
import re
import secrets
import socket

from protocol.topics import Topic, subscription

CLIENT_ID_PREFIX = "gatescan-collector"
DEFAULT_SHARE_GROUP = "collectors"
PERSISTENT_SESSION_EXPIRY_S = 7 * 24 * 3600
EPHEMERAL_SESSION_EXPIRY_S = 300  # a network blip's reconnects, not a restart
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SHARE_GROUP = re.compile(r"^[^/+#]+$")


def generated_client_id(prefix: str = CLIENT_ID_PREFIX) -> str:
    """`PREFIX-HOST-PID-RANDOM`: differs between processes, on one machine too."""
    host = _UNSAFE.sub("-", socket.gethostname())[:40].strip("-") or "host"
    return f"{prefix}-{host}-{os.getpid()}-{secrets.token_hex(3)}"


def session_expiry(client_id_given: bool, requested: int | None = None) -> int:
    """Seconds the broker keeps the session after a disconnect: `requested`, else by the id."""
    if requested is not None:
        return requested
    return PERSISTENT_SESSION_EXPIRY_S if client_id_given else EPHEMERAL_SESSION_EXPIRY_S


def check_share_group(group: str) -> str:
    """A share name is one topic level: no '/', '+' or '#' (MQTT v5, 4.8.2). Raises ValueError."""
    if not _SHARE_GROUP.match(group):
        raise ValueError(f"a share group is one topic level without / + #, not {group!r}")
    return group


def subscriptions(share_group: str | None) -> list[str]:
    """The topic filters a collector subscribes to. Events as a member of the share group (each
    event to one collector; None: to every collector). Status and telemetry to every collector:
    a retained status is never sent to a shared subscription (MQTT v5, 4.8.2), so a collector
    starting would not learn which gates are online until each spoke again; and both are small,
    and their store writes (a device's last state) the same whichever collector makes them."""
    events = subscription(Topic.EVENTS)
    # Answers and logs (issue 17), like events, to one collector of the group: each stored once.
    replies = [subscription(Topic.ANSWER), subscription(Topic.LOGS)]
    if share_group is not None:
        group = check_share_group(share_group)
        events = f"$share/{group}/{events}"
        replies = [f"$share/{group}/{topic}" for topic in replies]
    return [events, subscription(Topic.STATUS), subscription(Topic.TELEMETRY), *replies]
