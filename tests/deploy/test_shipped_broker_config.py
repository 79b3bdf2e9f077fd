"""deploy/mosquitto/ is what `gatescan site init` writes (server/site/broker_config.py): one source
for the listeners, the users' rules and the settings. After a change there, rewrite the shipped
files with `python -m server.site.broker_config deploy/mosquitto`."""

from __future__ import annotations

import pytest

from server.site.broker_config import (
    ACL_RULES,
    BrokerFiles,
    BrokerPorts,
    mosquitto_conf,
    shipped_files,
)
from tests.support.paths import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "deploy" / "mosquitto"
REWRITE = "python -m server.site.broker_config deploy/mosquitto"


@pytest.mark.parametrize("name", sorted(shipped_files()))
def test_the_shipped_file_is_what_the_site_module_writes(name: str) -> None:
    shipped = (SHIPPED / name).read_text(encoding="utf-8")

    assert shipped == shipped_files()[name], f"deploy/mosquitto/{name} is stale: run `{REWRITE}`"


def test_the_drop_in_differs_from_the_standalone_config_only_by_its_persistence_folder() -> None:
    files = BrokerFiles.under(PROJECT_ROOT / "site")
    standalone = mosquitto_conf(files, BrokerPorts()).splitlines()
    drop_in = mosquitto_conf(files, BrokerPorts(), drop_in=True).splitlines()

    settings = [line for line in standalone if line and not line.startswith("#")]
    drop_in_settings = [line for line in drop_in if line and not line.startswith("#")]
    assert [line for line in settings if line not in drop_in_settings] == [
        f"persistence_location {files.persistence}/"
    ]
    assert [line for line in drop_in_settings if line not in settings] == []


def test_the_settings_that_decide_security_and_speed_are_kept() -> None:
    conf = shipped_files()["gatescan.conf"].splitlines()

    for setting in (
        "allow_anonymous false",
        "per_listener_settings false",
        "max_packet_size 65536",
        "set_tcp_nodelay true",
        "max_queued_messages 10000",
        "max_inflight_messages 1000",
        "persistence true",
        "tls_version tlsv1.2",
        "listener 8883",
        "listener 1883 127.0.0.1",
    ):
        assert setting in conf
    first_listener = conf.index("listener 8883")
    # A listener's own setting: above the first listener it would open a default one on 1883.
    assert "use_username_as_clientid true" not in conf[:first_listener]
    assert conf[first_listener:].count("use_username_as_clientid true") == 2
    assert "pattern write gatescan/v1/devices/%u/events" in ACL_RULES.splitlines()
