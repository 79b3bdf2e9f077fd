"""The exchange's order and its failures (server/enrolment/exchange.py) on a real SQLite store,
with the broker's accounts recorded by a stand-in (the real broker's side is in
test_enrolment_service.py): nothing is spent when the broker fails, a gate revoked while its
client was being made is not granted, and two gates showing one card get one grant."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from protocol.enrolment import EnrolmentGrant, EnrolmentRequest
from server.broker_admin.dynsec import AdminLogin, BrokerAdminError
from server.enrolment.exchange import (
    EnrolmentRefused,
    EnrolmentService,
    EnrolmentSettings,
    GateAccounts,
)
from server.enrolment.tokens import new_token, token_digest
from server.store.database import Store
from server.store.gates import GateRegistry, NewGate

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
SETTINGS = EnrolmentSettings(
    "mqtts://broker.lan:8883", "-----BEGIN CERTIFICATE-----\n", AdminLogin("x", "admin", "pw")
)


class RecordedAccounts:
    """The broker's gate accounts as a list of calls; `fail` makes the next call refused."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = False
        self.during_ensure: Callable[[], None] = lambda: None

    def ensure_gate(self, device_id: str, site_id: str, password: str) -> None:
        if self.fail:
            raise BrokerAdminError("cannot reach the broker")
        self.during_ensure()
        self.calls.append(("ensure", device_id))

    def disable(self, device_id: str) -> bool:
        self.calls.append(("disable", device_id))
        return True

    def grant_policy_rights(self, gate_sites: dict[str, str]) -> None:
        self.calls.extend(("policy", device_id) for device_id in sorted(gate_sites))

    @contextmanager
    def session(self, _login: AdminLogin) -> Iterator[GateAccounts]:
        yield self


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[GateRegistry]:
    with Store(tmp_path / "site.db") as store:
        yield GateRegistry(store.engine)


def _pending(registry: GateRegistry, device_id: str = "gate-1") -> str:
    token = new_token()
    gate = NewGate(device_id, "hq", "lobby", "out")
    registry.add(gate, token_digest(token), NOW + timedelta(hours=1), NOW)
    return token


def _service(registry: GateRegistry, accounts: RecordedAccounts) -> EnrolmentService:
    return EnrolmentService(registry, SETTINGS, accounts=accounts.session, clock=lambda: NOW)


def _request(token: str) -> EnrolmentRequest:
    return EnrolmentRequest(token=token, agent_version="1.4.0", hardware="Pi 5")


def test_a_broker_that_fails_spends_nothing(registry: GateRegistry) -> None:
    token, accounts = _pending(registry), RecordedAccounts()
    accounts.fail = True
    with pytest.raises(EnrolmentRefused) as refused:
        _service(registry, accounts).exchange(_request(token))
    assert refused.value.reason == "busy"
    assert registry.get("gate-1").state == "pending"  # type: ignore[union-attr]

    accounts.fail = False
    grant = _service(registry, accounts).exchange(_request(token))
    assert (grant.device_id, grant.direction.value, grant.location) == ("gate-1", "out", "lobby")
    assert accounts.calls == [("ensure", "gate-1")]


def test_a_gate_revoked_while_its_client_was_made_is_not_granted(
    registry: GateRegistry,
) -> None:
    token, accounts = _pending(registry), RecordedAccounts()
    accounts.during_ensure = lambda: registry.set_state("gate-1", "revoked", NOW) and None

    with pytest.raises(EnrolmentRefused) as refused:
        _service(registry, accounts).exchange(_request(token))

    assert refused.value.reason == "used"
    assert accounts.calls == [("ensure", "gate-1"), ("disable", "gate-1")]
    assert registry.get("gate-1").state == "revoked"  # type: ignore[union-attr]


def test_two_gates_showing_one_card_get_one_grant(registry: GateRegistry) -> None:
    token, accounts = _pending(registry), RecordedAccounts()
    service = _service(registry, accounts)
    grants: list[EnrolmentGrant] = []
    refusals: list[str] = []
    start = threading.Barrier(8)

    def gate() -> None:
        start.wait()
        try:
            grants.append(service.exchange(_request(token)))
        except EnrolmentRefused as exc:
            refusals.append(exc.reason)

    threads = [threading.Thread(target=gate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(grants) == 1 and refusals == ["used"] * 7
    assert accounts.calls == [("ensure", "gate-1")]
