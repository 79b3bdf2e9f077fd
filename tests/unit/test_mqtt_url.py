import pytest

from device.mqtt_url import BrokerAddress, parse_mqtt_url


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
    assert parse_mqtt_url(url) == expected


def test_missing_port_defaults_to_1883_for_mqtt_and_8883_for_mqtts() -> None:
    assert parse_mqtt_url("mqtt://broker").port == 1883
    assert parse_mqtt_url("mqtts://broker").port == 8883


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://broker:1883", "scheme must be mqtt:// or mqtts://"),
        ("broker:1883", "scheme must be mqtt:// or mqtts://"),
        ("", "scheme must be mqtt:// or mqtts://"),
        ("mqtt://", "no host name"),
        ("mqtt://:1883", "no host name"),
        ("mqtt://broker:port", "port must be a number"),
        ("mqtt://broker:70000", "port must be a number"),
        ("mqtt://broker:0", "port must be a number"),
        ("mqtt://broker:1883/gatescan", "no path or query"),
        ("mqtt://broker:1883?tls=1", "no path or query"),
    ],
)
def test_bad_url_is_refused_with_a_clear_reason(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_mqtt_url(url)


def test_credentials_in_the_url_are_refused_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="credentials") as caught:
        parse_mqtt_url("mqtt://gate-1:s3cret@broker:1883")
    assert "s3cret" not in str(caught.value)
