"""How gates and the collector check the broker over TLS (an `mqtts://` broker URL).

    BrokerTls(ca_file=Path("ca.crt"))         trust this CA alone; None: the system's CA store
    client_tls_context(tls) -> ssl.SSLContext  TLS 1.2 at least, the broker's host name checked

    BrokerTlsError(ValueError)                 a file that cannot be used; the message says which
    connect_failure(error) -> str              why a connection failed, for the log

A site's broker has a certificate from the installation's own CA (`gatescan site init`), so a
client given `ca_file` trusts that CA and nothing else: not the system's store, which would also
accept any public CA's certificate for the broker's name. Without `ca_file` the system's store is
used, as for a broker with a certificate from a public CA. An optional client certificate
(`cert_file`, and `key_file` unless the key is in the same file) is shown to a broker that asks.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class BrokerTlsError(ValueError):
    """A CA file, client certificate or key that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The files a client checks the broker with (and shows it, with a client certificate)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def any_file(self) -> bool:
        return any(path is not None for path in (self.ca_file, self.cert_file, self.key_file))


def client_tls_context(tls: BrokerTls) -> ssl.SSLContext:
    """A client context for the broker: certificates checked against `ca_file` (else the system's
    store), its host name checked, TLS 1.2 or newer. Raises BrokerTlsError."""
    if tls.key_file is not None and tls.cert_file is None:
        raise BrokerTlsError(f"a key file ({tls.key_file}) needs its certificate file too")
    # Both check the certificate chain and the host name (CERT_REQUIRED, check_hostname).
    if tls.ca_file is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # the system's store
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no system CA: this one alone
        ca_file = tls.ca_file
        _load(ca_file, "CA file", lambda: context.load_verify_locations(cafile=ca_file))
    context.minimum_version = MINIMUM_VERSION
    if tls.cert_file is not None:
        cert_file = tls.cert_file
        _load(
            cert_file,
            "client certificate",
            lambda: context.load_cert_chain(cert_file, tls.key_file),
            key_file=tls.key_file,
        )
    return context


def _load(path: Path, what: str, load: Callable[[], object], key_file: Path | None = None) -> None:
    for checked in (path, key_file):
        if checked is not None and not checked.is_file():
            problem = "is a folder" if checked.is_dir() else "does not exist"
            raise BrokerTlsError(f"{what} {checked} {problem}")
    try:
        load()
    except PermissionError:
        raise BrokerTlsError(f"cannot read the {what} {path}: permission denied") from None
    except (ssl.SSLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
        if what == "client certificate":
            problem = f"{path} and its key{f' {key_file}' if key_file else ''} cannot be used"
        else:
            problem = f"{path} holds no PEM certificate"
        raise BrokerTlsError(f"{what}: {problem} ({reason})") from None


def connect_failure(error: BaseException | None) -> str:
    """Why connecting failed, in words for a log: a certificate the client refused says so (and
    what to check), rather than passing for a broker that is down. paho calls on_connect_fail
    while it handles the error, so a callback finds it in sys.exc_info()."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"the broker's certificate was refused ({error.verify_message}): check the CA file"
            " and that the broker URL names a host in the broker's certificate"
        )
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or error
        return f"the TLS handshake failed ({reason}): is the broker's port TLS?"
    if isinstance(error, OSError):
        return f"unreachable ({error.strerror or error})"
    return "unreachable"
