"""Broker addresses as the config writes them: "mqtt://host:port" or "mqtts://host:port" (TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Split a broker URL into host, port and TLS, or raise ValueError saying what is wrong."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"broker URL {url!r}: scheme must be mqtt:// or mqtts://, "
            f"not {parts.scheme or 'none'!r}"
        )
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and config dumps; they have their own file.
        raise ValueError(
            f"broker URL {_redacted(url)!r}: put the user name and password in the "
            "credentials, not in the URL"
        )
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r}: no host name (expected {scheme}://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"broker URL {url!r}: only {scheme}://host:port is allowed, no path or query"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {url!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"broker URL {url!r}: the port must be a number from 1 to 65535")
    return BrokerAddress(
        host=parts.hostname, port=port or DEFAULT_PORTS[scheme], tls=scheme == "mqtts"
    )


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
