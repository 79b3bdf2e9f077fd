"""The `update` remote command end to end (issue 17): a row in the real SQLite store as the
dashboard's rollout writes it (the bundle's URL in the row's `source`), the collector, the real
Mosquitto with the shipped ACL, a running agent on the replay camera; the request the updater's
path unit takes written in the gate's data dir, and the answer back in the store. Refusals leave
no request. The updater's result file reaches the store in the gate's telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device.update.requests import take_request, write_result
from gatescan.testing.broker import LocalBroker
from protocol.messages import Telemetry, parse_message
from protocol.release import __version__
from protocol.topics import Topic
from server.store.database import Store
from server.store.gate_commands import CommandRow, GateCommands
from tests.support.remote_gate import (
    GATE,
    RunningGate,
    acl_broker,
    answered,
    ask,
    running_collector,
    running_gate,
)
from tests.support.waiting import wait_until

BUNDLE_URL = "https://gates.example.com/releases/gatescan-9.9.9.tar"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Store, RunningGate]]:
    broker: LocalBroker
    with (
        acl_broker(tmp_path) as broker,
        Store(tmp_path / "server.db") as store,
        running_collector(broker, store) as _collector,
        running_gate(tmp_path / "gate", broker) as gate,
    ):
        wait_until(lambda: GateCommands(store.engine).site_of(GATE) == "hq", 10, "its status")
        yield store, gate


def answer(store: Store, command_id: str) -> CommandRow:
    """The command's row once the gate answered (`accepted` is not final: the updater's result
    comes in the telemetry, not as a second answer)."""

    def heard() -> CommandRow | None:
        row = GateCommands(store.engine).get(command_id)
        return row if row is not None and row.status not in ("pending", "sent") else None

    return wait_until(heard, 15, f"the answer to {command_id}")


def request_file(gate: RunningGate) -> Path:
    return Path(gate.agent.config.data_dir) / "update-request.json"


def test_update_writes_the_updaters_request_and_answers_accepted(
    site: tuple[Store, RunningGate],
) -> None:
    store, gate = site
    row = answer(store, ask(store, "update", {"version": "9.9.9", "source": BUNDLE_URL}))
    assert (row.status, row.detail) == ("accepted", "asked the updater for 9.9.9")
    # As the root updater reads it (device/update/requests.py's take_request).
    request = take_request(request_file(gate), Path(gate.agent.config.data_dir))
    assert (request.version, request.source, request.allow_downgrade) == (
        "9.9.9",
        BUNDLE_URL,
        False,
    )


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"version": "latest", "source": BUNDLE_URL}, "args.version: a release version"),
        ({"source": BUNDLE_URL}, "args.version: a release version"),
        ({"version": "9.9.9"}, "source: the bundle's http(s) URL is needed"),
        ({"version": "9.9.9", "source": "gatescan-9.9.9.tar"}, "source: the bundle's http(s)"),
        ({"version": __version__, "source": BUNDLE_URL}, f"already running {__version__}"),
    ],
)
def test_update_is_refused_without_a_version_or_a_url_and_asks_nothing(
    site: tuple[Store, RunningGate], args: dict[str, object], why: str
) -> None:
    store, gate = site
    row = answered(store, ask(store, "update", args))
    assert row.status == "refused"
    assert row.detail.startswith(why), row.detail
    assert not request_file(gate).exists()


def test_the_updaters_last_result_reaches_the_store_in_the_telemetry(
    site: tuple[Store, RunningGate], tmp_path: Path
) -> None:
    store, gate = site
    assert gate.agent.telemetry().update_result is None  # the updater never ran
    write_result(
        tmp_path / "gate" / "updater" / "result.json",
        {
            "outcome": "update_failed",
            "version": "9.9.9",
            "from": "0.1.0",
            "running": "0.1.0",
            "reason": "no processed frame within 60 s\n<b>switched back</b>",
            "at": "2026-12-07T01:00:00+00:00",
            "total_s": 71.2,
        },
    )
    telemetry = gate.agent.telemetry()
    gate.agent.uplink.publish_telemetry(telemetry)

    def stored() -> dict[str, object] | None:
        [device] = [d for d in store.devices() if d.device_id == GATE]
        found = (device.telemetry or {}).get("update_result")
        return found if isinstance(found, dict) else None

    wait_until(lambda: stored() is not None, 10, "the telemetry stored")
    assert stored() == {
        "outcome": "update_failed",
        "version": "9.9.9",
        "from_version": "0.1.0",
        "reason": "no processed frame within 60 s\\n<b>switched back</b>",
        "at": "2026-12-07T01:00:00Z",
    }
    # A reader of the protocol before the field ignores it; one after reads it back whole.
    older = Telemetry.model_validate_json(telemetry.to_json()).model_dump(exclude={"update_result"})
    assert older["version"] == __version__
    read = parse_message(Topic.TELEMETRY, telemetry.to_json())
    assert read.update_result == telemetry.update_result


def test_a_result_file_that_is_not_one_is_left_out_of_the_telemetry(
    site: tuple[Store, RunningGate], tmp_path: Path
) -> None:
    _, gate = site
    path = tmp_path / "gate" / "updater" / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[1, 2]")
    assert gate.agent.telemetry().update_result is None
    write_result(path, {"outcome": "updated", "version": "9.9.9", "from": None, "at": "soon"})
    result = gate.agent.telemetry().update_result
    assert result is not None and (result.outcome, result.at) == ("updated", None)
