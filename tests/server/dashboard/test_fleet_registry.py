"""The fleet page shows the gate registry (pending, enrolled, revoked, retired: site, location,
when) through the real web app, escapes what a gate reported about itself, flags a revoked gate
and takes a retired one off the list of gates needing attention."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from protocol.messages import Status
from server.store.database import Store
from server.store.gates import GateRegistry, NewGate, Reported
from tests.support.web import START, log_in

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _register(store: Store) -> None:
    registry = GateRegistry(store.engine)
    for number, state in enumerate(("pending", "enrolled", "revoked", "retired"), start=1):
        gate = NewGate(f"gate-{number}", "hq", f"Sảnh {number} <b>bold</b>", "in")
        registry.add(gate, f"{number:064x}", START + timedelta(days=3), START)
        if state != "pending":
            registry.enrol(gate.device_id, f"{number:064x}", Reported(HOSTILE, "1.4.0"), START)
        if state in ("revoked", "retired"):
            registry.set_state(gate.device_id, state, START)  # type: ignore[arg-type]
        # Every registered gate but the pending one was heard an hour ago, and is offline now.
        if state != "pending":
            heard = START - timedelta(hours=1)
            store.record_status(gate.device_id, Status(state="offline", ts=heard), heard)


def test_the_fleet_page_lists_every_registered_gate_with_its_state_escaped(
    store: Store, client: TestClient
) -> None:
    _register(store)
    log_in(client, "viewer")

    page = client.get("/").text

    assert page.count('data-registration="') == 4
    for number, state in enumerate(("pending", "enrolled", "revoked", "retired"), start=1):
        assert f'<tr data-gate="gate-{number}" data-registration="{state}">' in page
    assert HOSTILE not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "Sảnh 1 &lt;b&gt;bold&lt;/b&gt;" in page
    assert client.get("/live/fleet").text.count('data-registration="') == 4


def test_a_revoked_gate_needs_attention_and_a_retired_one_does_not(
    store: Store, client: TestClient
) -> None:
    _register(store)
    log_in(client, "viewer")

    page = client.get("/").text
    attention = page.split('id="attention"', 1)[1].split("</section>", 1)[0]

    assert 'data-gate="gate-3"' in attention  # revoked
    assert 'data-gate="gate-2"' in attention  # enrolled, offline for long
    assert 'data-gate="gate-4"' not in attention  # retired
