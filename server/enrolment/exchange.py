"""The exchange: a gate's single-use token for its broker login (protocol/enrolment.py).

    service = EnrolmentService(registry, settings)
    service.exchange(EnrolmentRequest(...))  -> EnrolmentGrant, or raises EnrolmentRefused

In order, for a token: its digest is looked up (unknown_token), its gate must not be revoked or
retired (revoked), its token not spent (used) nor past its expiry (expired). Then the gate's
broker client is made through dynamic security, with a fresh random password and a role of its
own (server/broker_admin/dynsec.py), and only then, in one transaction, the token is spent and the
gate marked enrolled. If the broker cannot be reached or refuses, nothing is spent (`busy`: the
gate asks again). If the database then fails, the token is still unspent, and the gate's next
try gives the same client a new password. One exchange at a time (a lock): two gates showing
the same card cannot both be granted.

Nothing here logs a token or a password.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from protocol.enrolment import EnrolmentGrant, EnrolmentRequest, RefusalReason
from protocol.verdicts import Direction
from server.broker_admin.dynsec import AdminLogin, BrokerAdmin, BrokerAdminError, run_as_admin
from server.clock import utc_now
from server.enrolment.tokens import token_digest
from server.store.gates import GateRegistry, Reported

log = logging.getLogger("gatescan.enrolment")

PASSWORD_BYTES = 32


class GateAccounts(Protocol):
    """What the exchange asks of the broker (BrokerAdmin, or a stand-in in a unit test)."""

    def ensure_gate(self, device_id: str, site_id: str, password: str) -> None: ...

    def disable(self, device_id: str) -> bool: ...

    def grant_policy_rights(self, gate_sites: dict[str, str]) -> None: ...


class EnrolmentRefused(Exception):
    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
        self.message = message


@dataclass(frozen=True)
class EnrolmentSettings:
    gate_broker_url: str  # mqtts://HOST:PORT, as gates reach the broker
    ca_pem: str  # the installation's CA, handed to the gate in its grant
    admin: AdminLogin  # the dynamic security admin


def broker_accounts(login: AdminLogin) -> AbstractContextManager[GateAccounts]:
    return BrokerAdmin(login)


class EnrolmentService:
    def __init__(
        self,
        registry: GateRegistry,
        settings: EnrolmentSettings,
        *,
        accounts: Callable[[AdminLogin], AbstractContextManager[GateAccounts]] = broker_accounts,
        clock: Callable[[], datetime] = utc_now,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._accounts = accounts
        self._clock = clock
        self._on_change = on_change  # the registry changed (the collector's map of sites)
        self._lock = threading.Lock()

    def exchange(self, request: EnrolmentRequest, peer: str = "") -> EnrolmentGrant:
        digest = token_digest(request.token)
        with self._lock:
            gate = self._registry.by_token(digest)
            if gate is None:
                raise EnrolmentRefused("unknown_token", "no such token on this server")
            if gate.state in ("revoked", "retired"):
                raise EnrolmentRefused("revoked", f"gate {gate.device_id} was {gate.state}")
            if not gate.token_open:
                raise EnrolmentRefused("used", "this card's token was used already")
            now = self._clock()
            if gate.token_expires_at <= now:
                raise EnrolmentRefused("expired", "this card's token has expired: ask for a new"
                                       " card (gatescan gate replace)")  # fmt: skip
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            try:
                self._as_admin(lambda a: a.ensure_gate(gate.device_id, gate.site_id, password))
            except BrokerAdminError as exc:
                log.warning("enrolment of %s from %s: the broker: %s", gate.device_id, peer, exc)
                raise EnrolmentRefused(
                    "busy", "the server cannot reach its broker; try again"
                ) from None
            reported = Reported(request.hardware, request.agent_version)
            if not self._registry.enrol(gate.device_id, digest, reported, now):
                self._disable_quietly(gate.device_id)  # revoked or replaced meanwhile
                raise EnrolmentRefused("used", "this card was revoked or replaced meanwhile")
        self._on_change()
        log.info("gate %s enrolled (site %s) from %s", gate.device_id, gate.site_id, peer)
        return EnrolmentGrant(
            device_id=gate.device_id,
            site_id=gate.site_id,
            location=gate.location,
            direction=Direction(gate.direction),
            broker_url=self._settings.gate_broker_url,
            username=gate.device_id,
            password=password,
            ca_pem=self._settings.ca_pem,
        )

    def grant_policy_rights(self) -> int:
        """Give a broker set up by an older version the site policy rights (the collector's, and
        each enrolled gate's to its own site's): how many gates. Raises BrokerAdminError."""
        gates = {g.device_id: g.site_id for g in self._registry.all() if g.state == "enrolled"}
        with self._lock:
            self._as_admin(lambda accounts: accounts.grant_policy_rights(gates))
        return len(gates)

    def _as_admin(self, work: Callable[[GateAccounts], object]) -> None:
        run_as_admin(lambda: self._accounts(self._settings.admin), work)

    def _disable_quietly(self, device_id: str) -> None:
        try:
            self._as_admin(lambda accounts: accounts.disable(device_id))
        except BrokerAdminError as exc:
            log.error("gate %s: could not disable its broker client: %s", device_id, exc)


class PolicyRightsTask:
    """At the server's start, `grant_policy_rights` in a thread of its own, tried again every
    RIGHTS_RETRY_S until the broker takes it: a site made by an older `site init` gets the
    rights site policies need without a step by hand."""

    def __init__(self, service: EnrolmentService, retry_s: float = 30.0) -> None:
        self._service = service
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="policy-rights", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                gates = self._service.grant_policy_rights()
            except Exception as exc:  # the broker not up yet, or refusing: later
                log.warning("broker rights for site policies not checked yet: %s", exc)
            else:
                log.info("broker rights for site policies checked (collector, %d gates)", gates)
                self.done.set()
                return
            if self._stop.wait(self._retry_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
