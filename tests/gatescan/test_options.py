"""What the commands share: the collector's broker options."""

from __future__ import annotations

import argparse

import pytest

from gatescan.options import MQTT_CLIENTS, add_broker_options, collector_login
from server.app import CollectorLogin
from server.collector.service import MqttClient


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_broker_options(parser)
    return parser.parse_args(argv)


def test_the_mqtt_client_choices_are_the_collectors_with_its_default_first() -> None:
    assert list(MQTT_CLIENTS) == [kind.value for kind in MqttClient]
    assert parse().mqtt_client == CollectorLogin("mqtt://x").mqtt_client == MqttClient.TUNED


def test_the_stock_client_is_chosen_by_name_and_a_typo_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATESCAN_MQTT_PASSWORD", "secret")
    assert collector_login(parse("--mqtt-client", "stock")).mqtt_client == "stock"
    with pytest.raises(SystemExit):
        parse("--mqtt-client", "stok")
    assert "invalid choice: 'stok'" in capsys.readouterr().err
