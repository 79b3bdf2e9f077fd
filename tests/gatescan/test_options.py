"""What the commands share: the collector's broker options and per-gate limits."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

import pytest

from gatescan.cli import build_parser
from gatescan.options import (
    DEFAULT_GATE_MAX_BYTES_PER_MINUTE,
    DEFAULT_GATE_MAX_MESSAGES_PER_SECOND,
    MQTT_CLIENTS,
    add_broker_options,
    add_gate_limit_options,
    collector_login,
)
from server.app import CollectorLogin, ServerOptions
from server.collector.limits import (
    DEFAULT_MAX_BYTES_PER_MINUTE,
    DEFAULT_MAX_MESSAGES_PER_SECOND,
    GateLimits,
)
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


def parse_limits(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_gate_limit_options(parser)
    return parser.parse_args(argv)


def test_the_gate_limit_defaults_are_the_collectors() -> None:
    args = parse_limits()
    limits = GateLimits(args.gate_max_messages_per_second, args.gate_max_bytes_per_minute)
    assert limits == GateLimits() == ServerOptions("sqlite://").gate_limits
    assert (DEFAULT_GATE_MAX_MESSAGES_PER_SECOND, DEFAULT_GATE_MAX_BYTES_PER_MINUTE) == (
        DEFAULT_MAX_MESSAGES_PER_SECOND,
        DEFAULT_MAX_BYTES_PER_MINUTE,
    )


def test_gate_limits_are_set_by_flag_zero_turns_one_off_and_a_negative_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_limits("--gate-max-messages-per-second", "0", "--gate-max-bytes-per-minute", "1e6")
    assert (args.gate_max_messages_per_second, args.gate_max_bytes_per_minute) == (0.0, 1e6)
    for bad in ("-1", "inf", "nan", "lots"):
        with pytest.raises(SystemExit):
            parse_limits("--gate-max-messages-per-second", bad)
        assert "0 (no limit) or more" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["collector", "server"])
def test_the_collector_and_server_commands_hand_their_gate_limits_to_the_collector(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    built: list[ServerOptions] = []

    def build_server(options: ServerOptions) -> Any:
        built.append(options)
        raise SystemExit(0)  # nothing to run: what it was asked to build is all we want

    monkeypatch.setattr("server.app.build_server", build_server)
    monkeypatch.setattr(f"gatescan.commands.{command}.stop_on_signals", threading.Event)
    monkeypatch.setenv("GATESCAN_MQTT_PASSWORD", "secret")
    argv = [command, "--db", f"sqlite:///{tmp_path / 'g.db'}", "--listen", "127.0.0.1:8080"]
    argv = argv[:3] if command == "collector" else argv
    args = build_parser().parse_args(
        [*argv, "--gate-max-messages-per-second", "50", "--gate-max-bytes-per-minute", "0"]
    )
    with pytest.raises(SystemExit):
        args.run(args)

    assert [options.gate_limits for options in built] == [GateLimits(50, 0)]


def test_server_toml_s_check_in_section_reaches_the_dashboard_and_the_alerts_cap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from server.alerts.rules import AlertRules
    from server.app import AlertOptions, init_alerts
    from server.checkin.limits import DAILY_CAP
    from server.store.database import Store

    built: list[ServerOptions] = []

    def build_server(options: ServerOptions) -> Any:
        built.append(options)
        raise SystemExit(0)

    monkeypatch.setattr("server.app.build_server", build_server)
    monkeypatch.setattr("gatescan.commands.server.stop_on_signals", threading.Event)
    config = tmp_path / "server.toml"
    config.write_text(
        'db = "g.db"\n[checkin]\nper_phone_per_min = 2\ndaily_cap = 300\n'
        "[checkin.sites.hq]\nhealth_questions = false\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("GATESCAN_MQTT_PASSWORD", "secret")
    args = build_parser().parse_args(["server", "--config", str(config)])
    with pytest.raises(SystemExit):
        args.run(args)

    [options] = built
    settings = options.dashboard
    assert settings is not None and settings.checkin_daily_cap == 300
    assert settings.checkin_per_phone_per_min == 2 and settings.checkin_per_address_per_min == 10
    assert not settings.checkin_sites["hq"].health_questions
    assert AlertRules().checkins_per_location_day == DAILY_CAP == type(settings)().checkin_daily_cap
    alerts = tmp_path / "alerts.toml"
    (tmp_path / "hook.secret").write_text("a shared secret of 32 bytes, ok\n")
    with Store(tmp_path / "g.db") as store:
        for text, cap in (("", 300), ("[rules]\ncheckins_per_location_day = 50\n", 50)):
            hook = '[[webhook]]\nurl = "http://127.0.0.1:9/"\nsecret_file = "hook.secret"\n'
            alerts.write_text(text + hook)
            with_alerts = ServerOptions(db_url="", dashboard=settings, alerts=AlertOptions(alerts))
            task = init_alerts(store, with_alerts)
            assert task is not None and task.rules.checkins_per_location_day == cap
