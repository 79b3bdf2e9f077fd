"""`gatescan server` serves /metrics with its collector's counters: build_server with a real
Mosquitto, a real collector, a real SQLite file and uvicorn on a real socket; events published
as a gate publishes them, then a scrape over HTTP parsed with prometheus_client's parser."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatescan.testing.broker import LocalBroker
from protocol.topics import Topic
from server.accounts.users import Accounts, Role
from server.app import CollectorLogin, Listen, Server, ServerOptions, build_server
from server.dashboard.settings import WebSettings
from tests.server.collector.test_collector import Gate, make_event, wait_for
from tests.support.web import FAST_HASHER

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def server(tmp_path: Path, broker: LocalBroker) -> Iterator[Server]:
    options = ServerOptions(
        db_url=f"sqlite:///{tmp_path / 'gatescan.db'}",
        collector=CollectorLogin(broker.url, client_id="metrics-test"),
        dashboard=WebSettings(),
        listen=Listen("127.0.0.1", 0),
        web_log_level="warning",
    )
    built = build_server(options)
    stop = threading.Event()
    running = threading.Thread(target=built.run, args=(stop,))
    running.start()
    try:
        assert built.collector is not None
        assert built.collector.wait_until_subscribed(10), "the collector did not subscribe"
        yield built
    finally:
        stop.set()
        running.join(timeout=30)


def get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(server: Server, token: str) -> Samples:
    assert server.url is not None
    status, text = get(server.url + "metrics", token)
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_events_stored_and_refused_move_the_counters_and_the_batch_latency(
    server: Server, broker: LocalBroker
) -> None:
    accounts = Accounts(server.store.engine, hasher=FAST_HASHER)
    token = accounts.create_token("prometheus", Role.METRICS)
    viewer = accounts.create_token("script", Role.VIEWER)
    assert server.url is not None
    assert get(server.url + "metrics", None)[0] == 401
    assert get(server.url + "metrics", viewer)[0] == 403

    before = scrape(server, token)
    assert before[("gatescan_events_stored_total", ())] == 0
    assert before[("gatescan_ingest_batch_seconds_count", ())] == 0

    gate = Gate(broker)
    try:
        gate.send(make_event("evt-metric01"))
        gate.send(make_event("evt-metric02"))
        wait_for(lambda: len(gate.acked_ids()) == 2, "two acks")
        gate.send(make_event("evt-metric01"))  # a resend: acked again, not stored again
        gate.publish(Topic.EVENTS, b"{")
        wait_for(lambda: len(gate.acked_ids()) == 3, "the resend's ack")
        wait_for(lambda: server.store.dead_letter_count() == 1, "the dead letter")
    finally:
        gate.close()

    after = scrape(server, token)
    assert after[("gatescan_events_received_total", ())] == 3
    assert after[("gatescan_events_stored_total", ())] == 2
    assert after[("gatescan_events_duplicate_total", ())] == 1
    assert after[("gatescan_messages_refused_total", (("reason", "not_json"),))] == 1
    assert after[("gatescan_dead_letters", (("reason", "not_json"),))] == 1
    batches = after[("gatescan_ingest_batch_seconds_count", ())]
    assert batches >= 1
    assert after[("gatescan_ingest_batch_seconds_bucket", (("le", "+Inf"),))] == batches
    assert 0 < after[("gatescan_ingest_batch_seconds_sum", ())] < 10
    assert ("process_cpu_seconds_total", ()) in after
