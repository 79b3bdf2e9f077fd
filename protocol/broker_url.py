"""Where gates and the collector find the broker: "mqtt://host[:port]" or "mqtts://host[:port]".

    parse_broker_url("mqtts://broker.lan") -> BrokerAddress(host="broker.lan", port=8883, tls=True)

    BrokerUrlError(ValueError)                the URL cannot be used; the message says why
      CredentialsInBrokerUrl(BrokerUrlError)  it holds a user name or password

Every message quotes the URL as written, with any password replaced by ***, so it can go to a log
or a technician's screen as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_USAGE = "use mqtt://host:port or mqtts://host:port"


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; `shown` is the URL as written, minus any password."""

    def __init__(self, shown: str, problem: str) -> None:
        self.shown = shown
        super().__init__(f"{shown!r} {problem}")


class CredentialsInBrokerUrl(BrokerUrlError):
    """The URL holds a user name or password, which belong in the client's credentials."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """Host, port (the scheme's default if none) and TLS of a broker URL, or BrokerUrlError."""
    text = url.strip()
    shown = _without_password(text)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        raise BrokerUrlError(shown, f"is not a broker URL; {_USAGE}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise BrokerUrlError(shown, f"is not a broker URL; {_USAGE}")
    if parts.username is not None or parts.password is not None:
        # A URL ends up in logs, process lists and config dumps; a password must not.
        raise CredentialsInBrokerUrl(
            shown, "holds a user name or password; give them to the MQTT client separately"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(shown, f"has a path or query; {_USAGE}")
    if not _port_is_valid(parts):
        raise BrokerUrlError(shown, "has a bad port; use a number 1..65535 in the broker URL")
    port = parts.port or DEFAULT_PORTS[scheme]
    return BrokerAddress(parts.hostname, port, tls=scheme == "mqtts")


def _port_is_valid(parts: SplitResult) -> bool:
    try:
        return parts.port != 0  # None, no port, is fine: the scheme's default is used
    except ValueError:  # not a number, or above 65535
        return False


def _without_password(text: str) -> str:
    """The URL with the password part of "user:password@" starred out.

    Done on the text, not on urlsplit's result: that also covers URLs urlsplit refuses or reads
    differently ("gate:s3cret@host" has no "//", so urlsplit sees a scheme and a path).
    """
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "", text
    ends = [index for index in (rest.find(mark) for mark in "/?#") if index >= 0]
    authority_end = min(ends, default=len(rest))
    userinfo, at, host = rest[:authority_end].rpartition("@")
    if not at or ":" not in userinfo:
        return text
    user = userinfo.partition(":")[0]
    return f"{scheme}{separator}{user}:***@{host}{rest[authority_end:]}"
