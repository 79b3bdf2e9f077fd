"""The broker's dynamic security: who may log in, and what each may do, changed at run time.

    initial_config(admin_password, collector_password)  -> the plugin's JSON config, as a dict
    gate_role(device_id, site_id)                        -> (role name, its ACL entries)
    find_plugin()                                        -> the plugin's path on this machine

Mosquitto's dynamic security plugin (Debian ships it with mosquitto 2.0) keeps clients, roles
and ACLs in a JSON file and changes them through its control topic,
`$CONTROL/dynamic-security/v1`, without a reload: the enrolment service creates a gate's client
there, and `gatescan gate revoke` disables it (the broker drops a connected client at once).

`site init` writes the first config: the admin client (the server's only: it may use the
control topic and nothing else; its password in a 0600 file beside server.toml) and the
collector's client and role. Mosquitto 2.0.11's plugin has no `%u`/`%c` patterns in its ACLs
(measured: a role granting `gatescan/v1/devices/%u/events` lets no gate write its own events),
so each gate gets a role of its own, `gate:ID`, made when it enrols (`gate_role`): its own
topics, and its site's policy to read (protocol/site_policy.py), which only the collector may
publish (COLLECTOR_POLICY_TOPIC); likewise its own `command` topic (the dashboard's door
release, identify, self-test...), which only the collector may publish (COLLECTOR_COMMAND_TOPIC),
and its own `answer` and `logs` topics, which it alone writes and the collector reads
(COLLECTOR_REPLY_TOPICS).

The plugin rewrites its file on every change, as the `mosquitto` user (after Mosquitto dropped
root), by writing FILE.new beside it and renaming: so the file lives in the broker's own data
folder (mosquitto-data/, the `mosquitto` user's), not in the installation's folder.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import secrets
from typing import Any

from protocol.preview.wire import (
    PREVIEW_REQUEST_WRITE,
    PREVIEW_SUBSCRIPTION,
    preview_request_topic,
    preview_topic,
)
from protocol.site_policy import SITES_PREFIX, policy_subscription
from protocol.topics import Topic, device_topic, subscription

DYNSEC_CONFIG_NAME = "dynamic-security.json"
PLUGIN_NAME = "mosquitto_dynamic_security.so"
ADMIN_USER = "gatescan-admin"
ADMIN_ROLE = "dynsec-admin"
COLLECTOR_ROLE = "collector"
GATE_ROLE_PREFIX = "gate:"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
COLLECTOR_POLICY_TOPIC = f"{SITES_PREFIX}/+/policy/#"  # every site's policy: the collector's
COLLECTOR_COMMAND_TOPIC = subscription(Topic.COMMAND)  # every gate's commands: the collector's
# Every gate's answers to its commands and its warnings and errors: the collector reads them.
COLLECTOR_REPLY_TOPICS = (subscription(Topic.ANSWER), subscription(Topic.LOGS))
# As the plugin itself hashes (PBKDF2-HMAC-SHA512, 12-byte salt): made here, so a password
# never goes on a command line (mosquitto_ctrl would take it there).
_ITERATIONS = 101
_SALT_BYTES = 12
# Where Debian and others put the plugin (its multiarch folder differs by machine: amd64,
# arm64, armhf): searched at run time, never written down for one machine.
_PLUGIN_GLOBS = (
    "/usr/lib/*/" + PLUGIN_NAME,
    "/usr/lib/" + PLUGIN_NAME,
    "/usr/lib/mosquitto/" + PLUGIN_NAME,
    "/usr/local/lib/" + PLUGIN_NAME,
    "/usr/local/lib/*/" + PLUGIN_NAME,
)


def find_plugin() -> str:
    """The plugin's path on this machine; its bare file name when none is found (Mosquitto
    then asks the dynamic loader, which finds it in the system's library folders)."""
    for pattern in _PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return PLUGIN_NAME


def hashed_client(username: str, password: str, roles: list[str]) -> dict[str, Any]:
    """A client entry of the plugin's config, its password hashed as the plugin does."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "username": username,
        "textname": "",
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
        "roles": [{"rolename": role} for role in roles],
    }


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


_WRITTEN = (Topic.STATUS, Topic.EVENTS, Topic.TELEMETRY)


def _gate_topics(device: str) -> tuple[list[str], str]:
    return [device_topic(device, kind) for kind in _WRITTEN], device_topic(device, Topic.ACK)


def gate_role(device_id: str, site_id: str) -> tuple[str, list[dict[str, Any]]]:
    """A gate's own role: write its status, events and telemetry, read its acks, its commands
    and its site's policy. Nothing else (the plugin's defaults deny every other publish and
    subscription)."""
    written, ack = _gate_topics(device_id)
    acls = [_acl("publishClientSend", topic) for topic in written]
    acls += [_acl("subscribeLiteral", ack), _acl("publishClientReceive", ack)]
    acls += gate_command_acls(device_id)
    acls += gate_preview_acls(device_id)
    return GATE_ROLE_PREFIX + device_id, acls + gate_policy_acls(site_id)


def gate_preview_acls(device_id: str) -> list[dict[str, Any]]:
    """A gate's right to the preview (issue 17): send its own frames, read its own requests."""
    request = preview_request_topic(device_id)
    return [
        _acl("publishClientSend", preview_topic(device_id)),
        _acl("subscribeLiteral", request),
        _acl("publishClientReceive", request),
    ]


def collector_preview_acls() -> list[dict[str, Any]]:
    """The collector's right to every gate's preview frames (only it reads them: they show
    faces) and to send every gate its preview requests."""
    return [
        _acl("subscribePattern", PREVIEW_SUBSCRIPTION),
        _acl("publishClientReceive", PREVIEW_SUBSCRIPTION),
        _acl("publishClientSend", PREVIEW_REQUEST_WRITE),
    ]


def gate_command_acls(device_id: str) -> list[dict[str, Any]]:
    """A gate's right to its own commands (read only), and to answer them and send its
    warnings and errors on its own `answer` and `logs` topics (write only)."""
    topic = device_topic(device_id, Topic.COMMAND)
    replies = [device_topic(device_id, Topic.ANSWER), device_topic(device_id, Topic.LOGS)]
    return [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)] + [
        _acl("publishClientSend", reply) for reply in replies
    ]


def collector_command_acl() -> dict[str, Any]:
    """The collector's right to send every gate its commands."""
    return _acl("publishClientSend", COLLECTOR_COMMAND_TOPIC)


def collector_reply_acls() -> list[dict[str, Any]]:
    """The collector's right to read every gate's answers and logs."""
    return [
        _acl(kind, topic)
        for topic in COLLECTOR_REPLY_TOPICS
        for kind in ("subscribePattern", "publishClientReceive")
    ]


def gate_policy_acls(site_id: str) -> list[dict[str, Any]]:
    """A gate's right to its site's policy: subscribe to it and receive it (read only)."""
    topic = policy_subscription(site_id)
    return [_acl("subscribePattern", topic), _acl("publishClientReceive", topic)]


def collector_policy_acl() -> dict[str, Any]:
    """The collector's right to publish every site's policy."""
    return _acl("publishClientSend", COLLECTOR_POLICY_TOPIC)


def initial_config(admin_password: str, collector_password: str) -> dict[str, Any]:
    """The plugin's config as `site init` writes it: the admin and the collector."""
    written, ack = [subscription(kind) for kind in _WRITTEN], subscription(Topic.ACK)
    collector_acls = [_acl("subscribePattern", topic) for topic in written]
    collector_acls += [_acl("publishClientReceive", topic) for topic in written]
    collector_acls.append(_acl("publishClientSend", ack))
    collector_acls.append(collector_policy_acl())
    collector_acls.append(collector_command_acl())
    collector_acls += collector_reply_acls()
    collector_acls += collector_preview_acls()
    control = CONTROL_TOPIC.rsplit("/", 1)[0] + "/#"
    admin_acls = [
        _acl("publishClientSend", control),
        _acl("publishClientReceive", control),
        _acl("subscribePattern", control),
    ]
    return {
        # Nothing but what a role grants: a new client with no role can do nothing.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            hashed_client(ADMIN_USER, admin_password, [ADMIN_ROLE]),
            hashed_client("collector", collector_password, [COLLECTOR_ROLE]),
        ],
        "groups": [],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls},
            {"rolename": COLLECTOR_ROLE, "acls": collector_acls},
        ],
    }
