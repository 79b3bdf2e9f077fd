"""The way from the gate to its broker, one step at a time, each with its own fix: DNS, TCP, TLS
(the broker's certificate against the gate's CA: a wrong CA, a name the certificate does not
hold, and an expired certificate are three different fixes), then MQTT's CONNACK with the gate's
own user and password (its reason code in words).

The MQTT check logs in as the gate: never while the gate's agent runs (a site's broker takes
the user name as the client id, so the doctor would knock the agent off); the caller reads the
running agent's own link state instead.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.diagnosis.findings import Finding, fail, ok, warn
from protocol.broker_tls import BrokerTlsError

CONNECT_TIMEOUT_S = 3.0
HANDSHAKE_TIMEOUT_S = 5.0
CONNACK_TIMEOUT_S = 5.0
RENEW_WITHIN_DAYS = 30

# OpenSSL's verify codes (X509_V_ERR_*) a broker's certificate meets most.
NOT_YET_VALID, EXPIRED = 9, 10
HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH = 62, 64
UNKNOWN_ISSUER = {2, 18, 19, 20, 21}


@dataclass(frozen=True)
class BrokerTarget:
    """The broker as the gate reaches it: from its enrolled identity, or from its config."""

    url: str
    host: str
    port: int
    tls: bool
    device_id: str
    username: str | None
    password: str | None
    context: Callable[[], ssl.SSLContext]  # raises BrokerTlsError
    ca_source: str  # which CA the certificate is checked against, in words
    enrolled: bool


def check_dns(target: BrokerTarget) -> Finding:
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        pass
    else:
        return ok("dns", f"{target.host} is an address: nothing to resolve")
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return fail(
            "dns",
            f"cannot resolve {target.host} ({error.strerror})",
            "check the host name in the broker URL, and the gate's DNS server (`resolvectl "
            "status`; the router's DHCP gives it)",
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    return ok("dns", f"{target.host} resolves to {', '.join(addresses)}")


def check_tcp(target: BrokerTarget, timeout: float = CONNECT_TIMEOUT_S) -> Finding:
    where = f"{target.host}:{target.port}"
    started = time.monotonic()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            elapsed_ms = (time.monotonic() - started) * 1000
    except ConnectionRefusedError:
        return fail(
            "tcp",
            f"{where} refused the connection: nothing listens on that port",
            "check the port in the broker URL (mqtts:// is 8883) and that the broker runs on "
            "the server (`systemctl status mosquitto`)",
        )
    except TimeoutError:
        return fail(
            "tcp",
            f"no answer from {where} within {timeout:g} s",
            "a firewall drops the connection or the address is not the server's: open the port "
            "on the server's firewall, check the broker URL",
        )
    except OSError as error:
        return fail(
            "tcp",
            f"cannot reach {where} ({error.strerror or error})",
            "the gate has no route to the server: check its cable or Wi-Fi and `ip route`",
        )
    return ok("tcp", f"{where} accepts connections ({elapsed_ms:.0f} ms)")


def check_tls(
    target: BrokerTarget, *, clock_synced: bool, timeout: float = HANDSHAKE_TIMEOUT_S
) -> Finding:
    if not target.tls:
        if _is_loopback(target.host):
            return ok("tls", f"not used: {target.url} is this machine's own broker")
        return warn(
            "tls",
            f"not used: {target.url} is plain mqtt://, the broker password travels in clear",
            "use the site's mqtts:// URL (port 8883) with its CA (mqtt.ca_file), or enrol the gate",
        )
    try:
        context = target.context()
    except BrokerTlsError as error:
        return fail("tls", str(error), _ca_fix(target))
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as secured,
        ):
            certificate = secured.getpeercert() or {}
            version = secured.version()
    except ssl.SSLCertVerificationError as error:
        return _refused_certificate(target, error, clock_synced)
    except ssl.SSLError as error:
        return fail(
            "tls",
            f"the TLS handshake with {target.host}:{target.port} failed ({error.reason})",
            "is this port the broker's TLS port? mqtts:// is 8883, plain mqtt:// is 1883",
        )
    except OSError as error:
        return fail("tls", f"no TLS connection ({error.strerror or error})", "see the tcp line")
    not_after = datetime.fromtimestamp(
        ssl.cert_time_to_seconds(str(certificate.get("notAfter"))), UTC
    )
    days = (not_after - datetime.now(UTC)).days
    found = (
        f"{version}: the broker's certificate for {target.host} verifies with "
        f"{target.ca_source}; valid until {not_after:%Y-%m-%d}"
    )
    if days < RENEW_WITHIN_DAYS:
        return warn(
            "tls",
            f"{found}, in {days} days",
            "renew the broker's certificate before then (docs/operations.md, the broker's "
            "certificate); every gate stops connecting the day it expires",
        )
    return ok("tls", found)


def _refused_certificate(
    target: BrokerTarget, error: ssl.SSLCertVerificationError, clock_synced: bool
) -> Finding:
    code = error.verify_code
    clock_note = "" if clock_synced else " by the gate's clock, which is not synchronised"
    if code == EXPIRED:
        return fail(
            "tls",
            f"the broker's certificate has expired{clock_note} ({error.verify_message})",
            "check the clock line first; else renew the broker's certificate on the server"
            if not clock_synced
            else "renew the broker's certificate on the server (docs/operations.md)",
        )
    if code == NOT_YET_VALID:
        return fail(
            "tls",
            f"the broker's certificate is not valid yet{clock_note} ({error.verify_message})",
            "the gate's clock is behind: see the clock line (NTP)",
        )
    if code in (HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH):
        names = _certificate_names(target)
        held = f"; it names {', '.join(names)}" if names else ""
        return fail(
            "tls",
            f"the broker's certificate does not name {target.host}{held}",
            "write the broker URL with a name the certificate holds (gatescan site init "
            "--host), or make the certificate again with this name",
        )
    if code in UNKNOWN_ISSUER:
        return fail(
            "tls",
            f"the broker's certificate is not signed by {target.ca_source} "
            f"({error.verify_message}): wrong CA",
            _ca_fix(target),
        )
    return fail(
        "tls", f"the broker's certificate was refused ({error.verify_message})", _ca_fix(target)
    )


def _ca_fix(target: BrokerTarget) -> str:
    if target.enrolled:
        return (
            "the site's CA changed since this gate enrolled (site init --force?): enrol the "
            "gate again (`gatescan gate replace ID` on the server, then its new card)"
        )
    return "set mqtt.ca_file to the site's ca.crt (`gatescan site init` writes it)"


def _certificate_names(target: BrokerTarget) -> list[str]:
    """The names in the broker's certificate, read without checking it (to say what it holds)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as secured,
        ):
            der = secured.getpeercert(binary_form=True)
        if der is None:
            return []
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    return [str(name.value) for name in names.value]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What a broker's CONNACK reason means for a gate, and what to do (MQTT v5 reason codes).
_REFUSALS: dict[int, str] = {
    0x84: "the broker does not speak MQTT v5: a site's broker is Mosquitto 2.0 or newer",
    0x85: "check device_id: it is the gate's broker user and client id",
    0x88: "the broker is not taking connections now: look at its log on the server",
    0x89: "the broker is busy: run the doctor again in a minute",
    0x8A: "the broker banned this client: look at the broker's config on the server",
}


def _refusal_fix(target: BrokerTarget, code: int) -> str:
    """A bad password and a user not allowed in are told apart by the broker, or not: Mosquitto
    2.0 with its dynamic security plugin answers both "not authorized" (0x87)."""
    if code in (0x86, 0x87):
        if target.enrolled:
            return (
                "the broker refuses this gate's user and password: the gate was revoked, "
                "replaced or retired on the server (`gatescan gate list`), or its password is "
                "not the one the broker holds: enrol it again with a new card"
            )
        return (
            "check mqtt.username and the password in the password file (mqtt.password_file), "
            "and that the broker knows this user (its password file, or `gatescan gate list`)"
        )
    return _REFUSALS.get(code, "look at the broker's log on the server")


def check_mqtt(target: BrokerTarget, timeout: float = CONNACK_TIMEOUT_S) -> Finding:
    """Log in as the gate (clean start: the agent keeps no session to lose) and log out."""
    answered = threading.Event()
    answers: list[ReasonCode] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"gatescan-{target.device_id}",
        protocol=mqtt.MQTTv5,
    )
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    user = target.username or "an anonymous login"

    def on_connect(
        _client: mqtt.Client, _userdata: object, _flags: object, reason: ReasonCode, _p: object
    ) -> None:
        answers.append(reason)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *_args: answered.set()
    try:
        if target.tls:
            client.tls_set_context(target.context())
        client.connect_timeout = timeout
        started = time.monotonic()
        client.connect(target.host, target.port, keepalive=15, clean_start=True)
        client.loop_start()
        answered.wait(timeout)
        elapsed_ms = (time.monotonic() - started) * 1000
    except (OSError, BrokerTlsError) as error:
        return fail("mqtt", f"could not connect ({error})", "see the tcp and tls lines")
    finally:
        client.disconnect()
        client.loop_stop()
    if not answers:
        return fail(
            "mqtt",
            f"no CONNACK within {timeout:g} s",
            "the port answers but not as an MQTT broker: check the broker URL's port",
        )
    reason = answers[0]
    if not reason.is_failure:
        return ok("mqtt", f"the broker accepted {user} (CONNACK: {reason}, {elapsed_ms:.0f} ms)")
    return fail(
        "mqtt",
        f"the broker refused {user}: {reason} (CONNACK 0x{reason.value:02X})",
        _refusal_fix(target, reason.value),
    )
