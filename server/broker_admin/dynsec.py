"""The broker's gate accounts, changed at run time through Mosquitto's dynamic security plugin.

    with BrokerAdmin(AdminLogin(url, "gatescan-admin", password, tls)) as admin:
        admin.ensure_gate("gate-hq-01", "hq", password)  # enrolment: client + own role, enabled
        admin.disable("gate-hq-01")                  # revoke: refused, and dropped if connected

Each call is one request on `$CONTROL/dynamic-security/v1` and its answer on `.../response`
(matched by correlationData), over a short MQTT v5 connection as the admin client that `site
init` made. Short, not kept open: the broker uses user names as client ids, so two sessions of
the admin at once (the server's enrolment service and a `gatescan gate revoke`) take the id from
each other. The one taken over stops at once with AdminSessionTaken (it does not reconnect, which
would take the id back in turn), and `run_as_admin` runs its work again in a fresh session after a
short random pause: every call here is safe to repeat.

The admin's password is passed in memory only: never on a command line, never logged.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocol.broker_tls import BrokerTls, client_tls_context
from protocol.broker_url import parse_broker_url
from server.site.dynsec_config import (
    COLLECTOR_ROLE,
    CONTROL_TOPIC,
    GATE_ROLE_PREFIX,
    collector_command_acl,
    collector_policy_acl,
    collector_preview_acls,
    collector_reply_acls,
    gate_command_acls,
    gate_policy_acls,
    gate_preview_acls,
    gate_role,
)

RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
TIMEOUT_S = 5.0
ATTEMPTS = 5  # sessions run_as_admin opens before it gives up to a session taken over
PAUSE_S = (0.1, 0.6)  # the random pause before the next, times the attempts so far

Session = TypeVar("Session")
Result = TypeVar("Result")


class BrokerAdminError(RuntimeError):
    """The broker could not be reached, refused the admin, or refused a command."""


class AdminSessionTaken(BrokerAdminError):
    """The broker dropped this admin session, most often for another one under the same user
    (and so the same client id): the work may be run again in a new session."""


def run_as_admin(
    open_session: Callable[[], AbstractContextManager[Session]],
    work: Callable[[Session], Result],
    *,
    attempts: int = ATTEMPTS,
    pause: Callable[[float], None] = time.sleep,
) -> Result:
    """`work` in a session from `open_session`, again in a new one (after a random pause that
    grows) while a session is taken over; the last AdminSessionTaken once `attempts` are spent.
    Other errors are raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            with open_session() as session:
                return work(session)
        except AdminSessionTaken:
            if attempt == attempts:
                raise
            pause(random.uniform(*PAUSE_S) * attempt)
    raise AssertionError("unreachable")  # attempts < 1


@dataclass(frozen=True)
class AdminLogin:
    broker_url: str
    username: str
    password: str = field(repr=False)
    tls: BrokerTls = field(default_factory=BrokerTls)


class BrokerAdmin:
    """One connection as the dynamic security admin; a context manager."""

    def __init__(self, login: AdminLogin, timeout_s: float = TIMEOUT_S) -> None:
        self._login = login
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._connack: ReasonCode | None = None
        self._closing = False
        self._lost: str | None = None  # why the broker dropped the session, if it did
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=login.username,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(login.username, login.password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe

    def __enter__(self) -> BrokerAdmin:
        address = parse_broker_url(self._login.broker_url)
        if address.tls:
            self._client.tls_set_context(client_tls_context(self._login.tls))
        try:
            self._client.connect(address.host, address.port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(f"cannot reach the broker at {address.host}:{address.port}:"
                                   f" {exc.strerror or exc}") from exc  # fmt: skip
        self._client.loop_start()
        if not self._connected.wait(self._timeout) or self._connack is None:
            self._close()
            raise BrokerAdminError("the broker did not answer the admin's connection")
        if self._connack.is_failure:
            self._close()
            raise BrokerAdminError(f"the broker refused the admin {self._login.username!r}:"
                                   f" {self._connack}")  # fmt: skip
        self._client.subscribe(RESPONSE_TOPIC, qos=1)
        with self._answered:
            confirmed = self._answered.wait_for(
                lambda: self._subscribed.is_set() or self._lost is not None, self._timeout
            )
        if self._lost is not None:
            self._close()
            raise self._taken()
        if not confirmed:
            self._close()
            raise BrokerAdminError("the broker did not confirm the admin's subscription")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    def _taken(self) -> AdminSessionTaken:
        return AdminSessionTaken(f"the broker dropped the admin session ({self._lost}): another"
                                 " one under the same user, the server's or a gatescan"
                                 " command's, most likely")  # fmt: skip

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:  # fmt: skip
        if self._closing:
            return
        with self._answered:
            self._lost = str(reason)
            self._answered.notify_all()
        # No reconnection: it would take the client id back from the session that took it,
        # and the two would knock each other off in turn. disconnect() ends paho's loop.
        client.disconnect()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:  # fmt: skip
        self._connack = reason
        self._connected.set()

    def _on_subscribe(self, *_args: Any) -> None:
        with self._answered:
            self._subscribed.set()
            self._answered.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            answer = json.loads(message.payload)
            responses = answer["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._answered:
            for response in responses if isinstance(responses, list) else []:
                if isinstance(response, dict) and isinstance(response.get("correlationData"), str):
                    self._answers[response["correlationData"]] = response
            self._answered.notify_all()

    def command(self, name: str, **fields: Any) -> dict[str, Any]:
        """Run one command; its response, or BrokerAdminError with the broker's error."""
        correlation = secrets.token_hex(8)
        request = {"commands": [{"command": name, **fields, "correlationData": correlation}]}
        self._client.publish(CONTROL_TOPIC, json.dumps(request), qos=1)
        with self._answered:
            self._answered.wait_for(
                lambda: correlation in self._answers or self._lost is not None, self._timeout
            )
            if correlation not in self._answers:
                if self._lost is not None:
                    raise self._taken()
                raise BrokerAdminError(f"the broker did not answer {name}")
            response = self._answers.pop(correlation)
        if response.get("error"):
            raise BrokerAdminError(f"{name}: {response['error']}")
        return response

    def ensure_gate(self, device_id: str, site_id: str, password: str) -> None:
        """The gate's client, with its own role, enabled, with this password: created, or
        (enrolled before, then replaced) given the new password and enabled again. A role made
        by an older version gains its site's policy (`addRoleACL`)."""
        role, acls = gate_role(device_id, site_id)
        try:
            self.command("createRole", rolename=role, acls=acls)
        except BrokerAdminError as exc:
            if "already" not in str(exc).lower():
                raise
            self.add_acls(
                role,
                gate_policy_acls(site_id)
                + gate_command_acls(device_id)
                + gate_preview_acls(device_id),
            )
        try:
            self.command(
                "createClient",
                username=device_id,
                password=password,
                roles=[{"rolename": role}],
            )
        except BrokerAdminError as exc:
            if "already exists" not in str(exc).lower():
                raise
            # Made by an earlier enrolment with its role (which nothing here takes away).
            self.command("setClientPassword", username=device_id, password=password)
            self.command("enableClient", username=device_id)

    def add_acls(self, role: str, acls: list[dict[str, Any]]) -> None:
        """Give a role these ACL entries; one it has already is left as it is."""
        for acl in acls:
            _unless_exists(lambda acl=acl: self.command("addRoleACL", rolename=role, **acl))

    def grant_policy_rights(self, gate_sites: dict[str, str]) -> None:
        """What a broker set up by an older `site init` lacks for site policies and commands:
        the collector's right to publish them and to read the gates' answers and logs, and
        each enrolled gate's (device id -> site) to read its site's policy and its own commands
        and to write its own answers and logs. Safe to run again: entries present already are
        left as they are."""
        collector = [collector_policy_acl(), collector_command_acl(), *collector_reply_acls()]
        collector += collector_preview_acls()
        self.add_acls(COLLECTOR_ROLE, collector)
        for device_id, site_id in sorted(gate_sites.items()):
            acls = gate_policy_acls(site_id) + gate_command_acls(device_id)
            acls += gate_preview_acls(device_id)
            try:
                self.add_acls(GATE_ROLE_PREFIX + device_id, acls)
            except BrokerAdminError as exc:
                if "not found" not in str(exc).lower():
                    raise  # else: a gate whose role is gone (never enrolled here): nothing to do

    def disable(self, device_id: str) -> bool:
        """Refuse the gate from now on, and drop it if connected. False: no such client (a gate
        that never enrolled: nothing to disable)."""
        try:
            self.command("disableClient", username=device_id)
        except BrokerAdminError as exc:
            if "not found" in str(exc).lower():
                return False
            raise
        return True

    def scramble(self, device_id: str) -> bool:
        """Disable the gate and give it a password no one knows (its card is being replaced:
        the old card is refused even if enabled again). False: no such client."""
        if not self.disable(device_id):
            return False
        self.command("setClientPassword", username=device_id, password=secrets.token_urlsafe(32))
        return True


def _unless_exists(run: Any) -> None:
    try:
        run()
    except BrokerAdminError as exc:
        if "already" not in str(exc).lower():
            raise
