"""Why a gate is not connected, from real causes: a name that does not resolve, a closed port, the
site's broker refusing a wrong password, a broker certificate from another CA. Each becomes the
LinkState the light shows (device/indicator/base.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device.indicator.base import IndicatorState, background_state
from device.journal.journal import Journal
from device.system.health import Health, LinkState
from device.uplink.link import Uplink
from gatescan.testing.broker import free_port
from protocol.broker_tls import BrokerTls
from server.site.certificates import new_authority, write_certificate
from server.site.installation import Installation
from tests.support.tls_site import new_site, site_broker, site_folder
from tests.support.waiting import wait_until

GATE, PASSWORD = "gate-states", "the-right-password-1"


@pytest.fixture(scope="module")
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        installation = new_site(folder, gates={GATE: PASSWORD})
        with site_broker(installation):
            yield installation


def link_state_for(
    tmp_path: Path, broker_url: str, *, password: str | None = None, ca: Path | None = None
) -> IndicatorState:
    health = Health()
    with Journal(tmp_path / "journal") as journal:
        uplink = Uplink(
            device_id=GATE,
            broker_url=broker_url,
            journal=journal,
            version="test",
            boot_id="boot-1",
            username=GATE if password else None,
            password=password,
            tls=BrokerTls(ca_file=ca) if ca else None,
            on_connection_change=health.set_online,
            on_link_problem=health.set_link,
        )
        uplink.start()
        try:
            wait_until(lambda: health.link is not LinkState.CONNECTING, 15, "a connect result")
            return background_state(health)  # before stopping, which takes the link down
        finally:
            uplink.stop()


def test_a_broker_name_that_does_not_resolve_is_no_network(tmp_path: Path) -> None:
    assert link_state_for(tmp_path, "mqtt://gate-broker.invalid:1883") is IndicatorState.NO_NETWORK


def test_a_closed_port_is_an_unreachable_broker(tmp_path: Path) -> None:
    state = link_state_for(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    assert state is IndicatorState.OFFLINE


def test_a_wrong_password_is_refused_credentials(site: Installation, tmp_path: Path) -> None:
    state = link_state_for(
        tmp_path, site.broker_url, password="not-the-password", ca=site.files.ca_file
    )
    assert state is IndicatorState.CREDENTIALS_REFUSED


def test_a_broker_certificate_from_another_ca_is_refused_credentials(
    site: Installation, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.crt"
    write_certificate(other_ca, new_authority("another installation").certificate)
    state = link_state_for(tmp_path, site.broker_url, password=PASSWORD, ca=other_ca)
    assert state is IndicatorState.CREDENTIALS_REFUSED


def test_the_right_password_and_ca_are_running(site: Installation, tmp_path: Path) -> None:
    state = link_state_for(tmp_path, site.broker_url, password=PASSWORD, ca=site.files.ca_file)
    assert state is IndicatorState.IDLE
