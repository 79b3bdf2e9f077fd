"""Broker URLs, as gates and the collector are given them: host, port and TLS, or a clear error."""

import pytest

from protocol.broker_url import (
    BrokerAddress,
    BrokerUrlError,
    CredentialsInBrokerUrl,
    parse_broker_url,
)

USAGE = "use mqtt://host:port or mqtts://host:port"
PORT_RANGE = "use a number 1..65535 in the broker URL"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884, tls=False)),
        ("mqtts://broker.example.vn:8884", BrokerAddress("broker.example.vn", 8884, tls=True)),
        ("MQTT://Broker.local:1883/", BrokerAddress("broker.local", 1883, tls=False)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883, tls=False)),
        ("  mqtt://broker:1883  ", BrokerAddress("broker", 1883, tls=False)),
    ],
)
def test_host_port_and_tls_are_read_from_the_url(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


def test_missing_port_defaults_to_1883_for_mqtt_and_8883_for_mqtts() -> None:
    assert parse_broker_url("mqtt://broker").port == 1883
    assert parse_broker_url("mqtts://broker").port == 8883


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker:1883", f"'http://broker:1883' is not a broker URL; {USAGE}"),
        ("broker:1883", f"'broker:1883' is not a broker URL; {USAGE}"),
        ("", f"'' is not a broker URL; {USAGE}"),
        ("mqtt://", f"'mqtt://' is not a broker URL; {USAGE}"),
        ("mqtt://:1883", f"'mqtt://:1883' is not a broker URL; {USAGE}"),
        ("mqtt:/broker", f"'mqtt:/broker' is not a broker URL; {USAGE}"),
        ("mqtt://[::1:1883", f"'mqtt://[::1:1883' is not a broker URL; {USAGE}"),
        ("mqtt://broker:port", f"'mqtt://broker:port' has a bad port; {PORT_RANGE}"),
        ("mqtt://broker:70000", f"'mqtt://broker:70000' has a bad port; {PORT_RANGE}"),
        ("mqtt://broker:0", f"'mqtt://broker:0' has a bad port; {PORT_RANGE}"),
        (
            "mqtt://broker:1883/gatescan",
            f"'mqtt://broker:1883/gatescan' has a path or query; {USAGE}",
        ),
        ("mqtt://broker:1883?tls=1", f"'mqtt://broker:1883?tls=1' has a path or query; {USAGE}"),
    ],
)
def test_a_bad_url_is_refused_with_what_a_good_one_looks_like(url: str, message: str) -> None:
    with pytest.raises(BrokerUrlError) as caught:
        parse_broker_url(url)

    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)  # callers that know only ValueError still catch it


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://gate-1:s3cret@broker:1883", "mqtt://gate-1:***@broker:1883"),
        ("mqtts://:s3cret@broker", "mqtts://:***@broker"),
        ("mqtt://gate-1:s3c@ret@broker", "mqtt://gate-1:***@broker"),
        ("mqtt://gate-1@broker", "mqtt://gate-1@broker"),
    ],
)
def test_credentials_in_the_url_are_refused_without_echoing_the_password(
    url: str, shown: str
) -> None:
    with pytest.raises(CredentialsInBrokerUrl) as caught:
        parse_broker_url(url)

    assert caught.value.shown == shown
    assert str(caught.value).startswith(f"{shown!r} holds a user name or password;")
    assert "s3c" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["gate-1:s3cret@broker:1883", "mqtt://gate-1:s3cret@[::1", "tcp://gate-1:s3cret@broker"]
)
def test_a_password_is_not_echoed_even_when_the_url_is_wrong_otherwise(url: str) -> None:
    with pytest.raises(BrokerUrlError, match="is not a broker URL") as caught:
        parse_broker_url(url)

    assert "s3cret" not in str(caught.value)
    assert "gate-1:***@" in str(caught.value)
