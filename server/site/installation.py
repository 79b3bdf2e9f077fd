"""`gatescan site init DIR`: what a server installation needs, written into one folder.

    init_site(SiteRequest(Path("/etc/gatescan/site"), hosts=("broker.lan",))) -> Installation

The folder gets the installation's CA (ca.key, ca.crt), the broker's certificate signed by it
for the hosts given and this machine's loopback names (broker.key, broker.crt), the broker's
config (mosquitto.conf: TLS listener, loopback-only plain listener, users, ACL: broker_config.py),
the dynamic security plugin's first config (mosquitto-data/dynamic-security.json: the admin
client, the server's only, its password in dynsec-admin.password; the collector's client and
role: dynsec_config.py), the collector's broker user with a generated password
(collector.password, and its hash in mosquitto.passwd), the enrolment service's certificate
(enrol.key, enrol.crt: the same names as the broker's, signed by the same CA), and server.toml
for `gatescan server --config`. Keys and passwords are 0600
from their first byte. Run as root on a machine with a `mosquitto` user, the files the broker
reads after dropping root (its key, the password file, its persistence folder) become that
user's; otherwise `Installation.broker_owner` is None and the caller says what to chown.

An existing installation is never replaced unless asked (`force`): a new CA means every gate must
be given the new ca.crt before it can connect again.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from server.site.broker_config import (
    ACL_RULES,
    COLLECTOR_USER,
    LOOPBACK_PORT,
    TLS_PORT,
    BrokerFiles,
    BrokerPorts,
    mosquitto_conf,
    password_line,
)
from server.site.certificates import (
    issue_server_certificate,
    new_authority,
    write_certificate,
    write_private_file,
    write_private_key,
)
from server.site.dynsec_config import ADMIN_USER, find_plugin, initial_config

SERVER_CONFIG_NAME = "server.toml"
COLLECTOR_PASSWORD_NAME = "collector.password"
ADMIN_PASSWORD_NAME = "dynsec-admin.password"
ENROL_KEY_NAME = "enrol.key"
ENROL_CERT_NAME = "enrol.crt"
ENROL_PORT = 8443
DEFAULT_DB = "gatescan.db"  # relative: in the installation's folder
WEB_PORT = 8080
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
BROKER_SYSTEM_USER = "mosquitto"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class SiteInitError(ValueError):
    """A request `site init` cannot carry out; the message says what to change."""


@dataclass(frozen=True)
class SiteRequest:
    folder: Path
    hosts: tuple[str, ...]  # the broker's names on the LAN; the first goes in the broker URL
    mqtt_port: int = TLS_PORT
    loopback_port: int | None = LOOPBACK_PORT  # None: no plain listener at all
    web_port: int = WEB_PORT
    enrol_port: int = ENROL_PORT  # the enrolment service's HTTPS port, on every interface
    db: str = DEFAULT_DB
    force: bool = False


@dataclass(frozen=True)
class Installation:
    files: BrokerFiles
    written: tuple[Path, ...]
    broker_url: str
    enrol_url: str
    broker_owner: str | None  # the system user the broker's files were given to, if any

    @property
    def server_config(self) -> Path:
        return self.files.folder / SERVER_CONFIG_NAME


def check_host(name: str) -> str:
    """A DNS name or an IP address the broker's certificate can name; SiteInitError if not."""
    text = name.strip()
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    host = text.rstrip(".")
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(part) for part in host.split(".")):
        raise SiteInitError(
            f"--host {name!r} is not a host name or IP address: use letters, digits and '-' "
            "in dot-separated parts (broker.lan, gatescan.example.com) or an address (192.0.2.10)"
        )
    return host.lower()


def check_port(flag: str, port: int) -> int:
    if not 0 < port < 65536:
        raise SiteInitError(f"{flag} {port}: a port is a number from 1 to 65535")
    return port


def planned_files(files: BrokerFiles) -> list[Path]:
    """Every path `init_site` writes in the folder, in the order it writes them."""
    folder = files.folder
    return [
        files.ca_file.with_name("ca.key"),
        files.ca_file,
        files.keyfile,
        files.certfile,
        folder / COLLECTOR_PASSWORD_NAME,
        files.password_file,
        folder / ADMIN_PASSWORD_NAME,
        files.dynsec_config,
        folder / ENROL_KEY_NAME,
        folder / ENROL_CERT_NAME,
        files.acl_file,
        files.conf,
        folder / SERVER_CONFIG_NAME,
    ]


def init_site(request: SiteRequest) -> Installation:
    """Write the installation; SiteInitError before writing anything if it cannot be done."""
    hosts = tuple(dict.fromkeys(check_host(host) for host in request.hosts))
    if not hosts:
        raise SiteInitError("give the broker's name on the LAN with --host")
    ports = {
        "--mqtt-port": request.mqtt_port,
        "--web-port": request.web_port,
        "--enrol-port": request.enrol_port,
    }
    if request.loopback_port is not None:
        ports["--loopback-port"] = request.loopback_port
    for flag, port in ports.items():
        check_port(flag, port)
    if len(set(ports.values())) != len(ports):
        listed = ", ".join(f"{flag} {port}" for flag, port in ports.items())
        raise SiteInitError(f"the ports must differ: {listed}")
    files = BrokerFiles.under(request.folder)
    _check_folder(files, request.force)

    files.folder.mkdir(parents=True, exist_ok=True)
    files.persistence.mkdir(mode=0o700, exist_ok=True)
    broker_url = f"mqtts://{_url_host(hosts[0])}:{request.mqtt_port}"
    enrol_url = f"https://{_url_host(hosts[0])}:{request.enrol_port}"
    written = _write(files, hosts, broker_url, enrol_url, request)
    owner = give_broker_its_files(files)
    return Installation(files, tuple(written), broker_url, enrol_url, owner)


def _check_folder(files: BrokerFiles, force: bool) -> None:
    folder = files.folder
    if folder.exists() and not folder.is_dir():
        raise SiteInitError(f"{folder} is a file, not a folder")
    existing = [path.name for path in planned_files(files) if path.exists()]
    if existing and not force:
        raise SiteInitError(
            f"{folder} already holds an installation ({', '.join(existing)}); not replacing it. "
            "A new one makes a new CA, and every gate then needs the new ca.crt: "
            "add --force to replace it"
        )


def _write(
    files: BrokerFiles,
    hosts: tuple[str, ...],
    broker_url: str,
    enrol_url: str,
    request: SiteRequest,
) -> list[Path]:
    folder = files.folder
    authority = new_authority(f"gatescan site CA ({hosts[0]})")
    names = list(dict.fromkeys([*hosts, *LOOPBACK_NAMES]))
    broker = issue_server_certificate(authority, names)
    enrolment = issue_server_certificate(authority, names)
    collector_password = secrets.token_urlsafe(24)
    admin_password = secrets.token_urlsafe(32)
    write_private_key(files.ca_file.with_name("ca.key"), authority.key)
    write_certificate(files.ca_file, authority.certificate)
    write_private_key(files.keyfile, broker.key)
    write_certificate(files.certfile, broker.certificate)
    write_private_file(folder / COLLECTOR_PASSWORD_NAME, f"{collector_password}\n".encode())
    write_private_file(
        files.password_file, password_line(COLLECTOR_USER, collector_password).encode()
    )
    write_private_file(folder / ADMIN_PASSWORD_NAME, f"{admin_password}\n".encode())
    dynsec = initial_config(admin_password, collector_password)
    write_private_file(files.dynsec_config, (json.dumps(dynsec, indent=2) + "\n").encode())
    write_private_key(folder / ENROL_KEY_NAME, enrolment.key)
    write_certificate(folder / ENROL_CERT_NAME, enrolment.certificate)
    _write_public(files.acl_file, ACL_RULES)
    ports = BrokerPorts(tls=request.mqtt_port, loopback=request.loopback_port)
    _write_public(files.conf, mosquitto_conf(files, ports, plugin=find_plugin()))
    local_url = f"mqtts://localhost:{request.mqtt_port}"
    toml = server_toml(local_url, request, gate_broker=broker_url, enrol_url=enrol_url)
    _write_public(folder / SERVER_CONFIG_NAME, toml)
    return planned_files(files)


def server_toml(
    broker_url: str, request: SiteRequest, *, gate_broker: str = "", enrol_url: str = ""
) -> str:
    """server.toml for this installation (load_server_config reads it back)."""
    return f"""\
# gatescan server --config server.toml: written by `gatescan site init`. Every key is a flag of
# `gatescan server` without its dashes; a flag on the command line beats the file. Relative paths
# are relative to this file's folder.

# The database (a SQLAlchemy URL, or a SQLite file).
db = {_toml(request.db)}
# The dashboard answers on this machine only: put an HTTPS reverse proxy in front of it (and set
# secure_cookies = true), or write "0.0.0.0:{request.web_port}" to serve the LAN in clear text.
listen = "127.0.0.1:{request.web_port}"

# The enrolment service (`gatescan gate add`, docs/operations.md): HTTPS on the LAN, where a gate
# in setup mode exchanges the token of its enrolment QR for its broker login. Its key is the
# server's to read, not the broker's (enrol.key: chown it to the server's user, or hand it over
# as the systemd credential enrol_key).
enrol_listen = "0.0.0.0:{request.enrol_port}"
enrol_cert_file = {_toml(ENROL_CERT_NAME)}
enrol_key_file = {_toml(ENROL_KEY_NAME)}
# What a gate is told: the enrolment service's address (in its QR) and the broker's (in its
# grant), under the name given to `site init --host`.
enrol_url = {_toml(enrol_url)}
gate_broker = {_toml(gate_broker)}

# Self check-in posters (`gatescan location add`, docs/operations.md, "Self check-in"): the
# address where visitors' phones reach this server's /c/ pages, behind the HTTPS proxy; every
# poster's QR holds it. Uncomment it with the name the proxy answers on.
# public_url = "https://checkin.example.vn"

[mqtt]
# TLS, checked against this installation's CA and the broker's name. The server runs beside the
# broker, so it reaches it on this machine (localhost is in the broker's certificate): no name
# to resolve, and the server unit may talk to loopback alone (IPAddressAllow=localhost).
broker = {_toml(broker_url)}
username = {_toml(COLLECTOR_USER)}
# The client id the broker would take anyway (use_username_as_clientid): the same on every
# restart, so a restart takes up the session the broker queued events in. A second collector
# gets a broker user of its own and sets both to it (docs/operations.md, "Several collectors").
client_id = {_toml(COLLECTOR_USER)}
# The collector's broker password ($GATESCAN_MQTT_PASSWORD or the systemd credential
# mqtt_password come first); never the password itself in this file.
password_file = {_toml(COLLECTOR_PASSWORD_NAME)}
ca_file = "ca.crt"
# The dynamic security plugin's admin: the server's only, for creating, disabling and changing
# gates' broker clients ($GATESCAN_ADMIN_PASSWORD or the systemd credential admin_password first).
admin_username = {_toml(ADMIN_USER)}
admin_password_file = {_toml(ADMIN_PASSWORD_NAME)}
"""


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_public(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)


def give_broker_its_files(files: BrokerFiles) -> str | None:
    """Mosquitto 2.0 reads its password file after it switched from root to the `mosquitto`
    user (and its key on a reload): as root, make them that user's, still 0600."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(BROKER_SYSTEM_USER)
    except KeyError:
        return None
    owned = (files.keyfile, files.certfile, files.password_file, files.persistence)
    for path in (*owned, files.dynsec_config):
        os.chown(path, user.pw_uid, user.pw_gid)
    return BROKER_SYSTEM_USER
