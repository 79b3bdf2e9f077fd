"""The site's Mosquitto: its listeners, users and ACL rules, in one place.

    mosquitto_conf(BrokerFiles.under(folder), BrokerPorts(8883, 1883))  -> mosquitto.conf text
    ACL_RULES                                                             -> the ACL file's text
    password_line("collector", secret)                                    -> a password file line

`gatescan site init` writes these into an installation's folder, and deploy/mosquitto/ ships
them for a site initialised in /etc/gatescan/site (its gatescan.conf is the drop-in form, for
Debian's /etc/mosquitto/conf.d/). tests/deploy/test_shipped_broker_config.py checks that the
shipped files are what this module writes; after a change here, rewrite them with
`python -m server.site.broker_config deploy/mosquitto`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from server.site.dynsec_config import DYNSEC_CONFIG_NAME, PLUGIN_NAME

COLLECTOR_USER = "collector"
TLS_PORT = 8883
LOOPBACK_PORT = 1883
SHIPPED_FOLDER = Path("/etc/gatescan/site")  # what deploy/mosquitto/gatescan.conf names
CONF_NAME = "mosquitto.conf"
ACL_NAME = "gatescan.acl"
PASSWORD_FILE_NAME = "mosquitto.passwd"
CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
BROKER_CERT_NAME = "broker.crt"
BROKER_KEY_NAME = "broker.key"
PERSISTENCE_NAME = "mosquitto-data"
# Mosquitto 2.0's own password hash ("$7$"): PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt, as
# mosquitto_passwd writes it. Made here so the password never goes on a command line.
_PBKDF2_ROUNDS = 101
_SALT_BYTES = 12

ACL_RULES = """\
# Gates: a gate's MQTT user name is its device id (%u), so it can write only its own topics and read
# only its own acks. %u, not %c: a client chooses its own client id, not its user name.
# `pattern` lines apply to every user; a `topic` line above the first `user` line would apply to
# anonymous clients only. Mosquitto 2.0 grants any SUBSCRIBE and checks read access per message
# when delivering, so a gate subscribed to `#` still receives only its own acks (and under MQTT v5
# a refused PUBLISH gets PUBACK 0x87). No gate may be named `collector`: that is the server's user.
pattern write gatescan/v1/devices/%u/status
pattern write gatescan/v1/devices/%u/events
pattern write gatescan/v1/devices/%u/telemetry
pattern read gatescan/v1/devices/%u/ack
pattern read gatescan/v1/devices/%u/command
pattern write gatescan/v1/devices/%u/answer
pattern write gatescan/v1/devices/%u/logs
# The aim-and-focus preview (docs/protocol.md, "Preview"): a gate sends its own frames, which
# only the collector reads (they show faces), and reads its own requests, which only it sends.
pattern write gatescan/v1/devices/%u/preview
pattern read gatescan/v1/devices/%u/preview_request

# The collector reads every gate and acknowledges to every gate, publishes each site's policy
# (its keys and lists, retained: docs/protocol.md, "Site policy") and sends gates their commands
# (a manager's door release, identify, self-test...: docs/protocol.md, "Commands"); no one else
# may write there. It reads each gate's answers to them and its warnings and errors (`logs`).
user collector
topic read gatescan/v1/devices/+/status
topic read gatescan/v1/devices/+/events
topic read gatescan/v1/devices/+/telemetry
topic read gatescan/v1/devices/+/answer
topic read gatescan/v1/devices/+/logs
topic write gatescan/v1/devices/+/ack
topic write gatescan/v1/sites/+/policy/#
topic write gatescan/v1/devices/+/command
topic read gatescan/v1/devices/+/preview
topic write gatescan/v1/devices/+/preview_request

# A gate kept by hand (in the password file, not enrolled) reads its own site's policy with lines
# of its own, the site id as one topic level (letters, digits, _ . - kept, anything else %XX):
#   user gate-hq-01
#   topic read gatescan/v1/sites/hq/policy/#
# (Enrolled gates get that right from the dynamic security plugin, their role made at enrolment.)
"""

_HEADER = """\
# Mosquitto for a gatescan site, as `gatescan site init` writes it for the installation in
#   {folder}
# Every client logs in over TLS, and the ACL confines each gate to its own topics.
{how_to_run}
# Gates log in with a user of their own (the user name IS the device id): enrolled ones are the
# dynamic security plugin's (`gatescan gate add`); a gate kept by hand is added with
#   mosquitto_passwd {password_file} gate-hq-01
# Mosquitto 2.0 drops root (for the `mosquitto` user) before it reads the password file, so its
# key, password file and data folder are that user's, still 0600: `site init` run as root sees to
# it; else, as root:
#   chown mosquitto: {key} {password_file}
#   chown -R mosquitto: {data}
# After a change, `systemctl reload mosquitto` (SIGHUP) rereads the password and ACL files.
"""
_STANDALONE = """\
# Run it as it is, as root (it switches to the `mosquitto` user):
#   mosquitto -c {conf}"""
_DROP_IN = """\
# The drop-in form, for Debian's /etc/mosquitto/conf.d/gatescan.conf (its main mosquitto.conf says
# where persistence is kept); `site init` writes the standalone form as
#   {conf}"""

_SETTINGS = """\
per_listener_settings false
allow_anonymous false
# Gates enrolled with `gatescan gate add` and the enrolment service are clients of the dynamic
# security plugin: created, disabled and given new passwords at run time through its control
# topic, no reload (server/site/dynsec_config.py). Its file sits in the broker's data folder:
# the plugin rewrites it, as the `mosquitto` user, on every change.
plugin {plugin}
plugin_opt_config_file {dynsec_config}
# Beside it, for users kept by hand (mosquitto_passwd: a bench, a gate not enrolled) and as every
# user's topic rules: the plugin answers for its own clients, these files for the rest, and the
# ACL's %u patterns confine an enrolled gate to its own topics too (its user name is its id).
password_file {password_file}
acl_file {acl_file}
# Keep queued QoS 1 messages for the collector while it restarts. The gates' journals are the real
# safety net: an event leaves a gate only when the collector acknowledged it after its commit.
persistence true
{persistence_location}autosave_interval 60
max_queued_messages 10000
# The most QoS 1 messages the broker keeps in flight to a client that names no Receive Maximum
# of its own, and what it announces as its own Receive Maximum: a client may have up to 1000 QoS 1
# publishes unacknowledged towards it (the default of 20 throttles a busy client).
max_inflight_messages 1000
# Send each packet at once (TCP_NODELAY). With Nagle's algorithm on, a second small packet to a
# client (an ack, an event for the collector) waits until the client acknowledges the first one
# at TCP level, which Linux delays by up to 40 ms: every ack round trip gained about 40 ms
# (bench/ingest_bench.py at 500 gates: publish-to-ack p50 at half load 45 ms with it on).
set_tcp_nodelay true
# A gate message is at most a few KiB (a QR code holds 2,953 bytes); refuse packets above the
# collector's own 64 KiB limit at the broker. max_packet_size, not message_size_limit: the broker
# announces it in CONNACK, so a gate sets such an event aside instead of resending it for ever
# (Mosquitto 2.0.11 answers message_size_limit with a PUBACK code paho treats as malformed).
max_packet_size 65536
"""

_TLS_LISTENER = """\
# The site's listener, on every interface: TLS only, so gate passwords, ID numbers and names never
# cross the LAN readable. The certificate is signed by the installation's own CA (cafile below),
# which gates (mqtt.ca_file) and the collector (ca_file in server.toml) check it against, with
# its host name. TLS 1.2 at least (Mosquitto 2.0's tls_version is the lowest it accepts): 1.0 and
# 1.1 are refused at the handshake. cafile is read only for client certificates: add
# `require_certificate true` to refuse clients without one signed by this CA.
listener {port}
# A client's id is its user name, whatever id it asks for: one gate's credentials cannot take the
# collector's session (and the events queued in it) nor knock another gate off by connecting
# under its id. So each process logs in as its own user: a second collector gets a user of its own
# (two processes of one user would take the session from each other). A setting of each listener:
# written above the first `listener` line it would make Mosquitto open a default listener on 1883
# on every interface, in clear text, and leave this listener without it.
use_username_as_clientid true
certfile {certfile}
keyfile {keyfile}
cafile {ca_file}
tls_version tlsv1.2
"""
_LOOPBACK_LISTENER = """\
# Plain MQTT for this machine only (mosquitto_sub while debugging, a local tool), never the LAN:
# it binds the loopback address, and logs in with the same users and ACL as the TLS listener.
listener {port} 127.0.0.1
use_username_as_clientid true
"""


@dataclass(frozen=True)
class BrokerFiles:
    """Where the broker's files are, as the config names them (absolute paths)."""

    folder: Path

    @classmethod
    def under(cls, folder: Path) -> BrokerFiles:
        return cls(folder.absolute())

    @property
    def conf(self) -> Path:
        return self.folder / CONF_NAME

    @property
    def acl_file(self) -> Path:
        return self.folder / ACL_NAME

    @property
    def password_file(self) -> Path:
        return self.folder / PASSWORD_FILE_NAME

    @property
    def ca_file(self) -> Path:
        return self.folder / CA_CERT_NAME

    @property
    def certfile(self) -> Path:
        return self.folder / BROKER_CERT_NAME

    @property
    def keyfile(self) -> Path:
        return self.folder / BROKER_KEY_NAME

    @property
    def persistence(self) -> Path:
        return self.folder / PERSISTENCE_NAME

    @property
    def dynsec_config(self) -> Path:
        return self.persistence / DYNSEC_CONFIG_NAME


@dataclass(frozen=True)
class BrokerPorts:
    tls: int = TLS_PORT
    loopback: int | None = LOOPBACK_PORT  # plain MQTT on 127.0.0.1; None: no such listener


def mosquitto_conf(
    files: BrokerFiles, ports: BrokerPorts, *, drop_in: bool = False, plugin: str = PLUGIN_NAME
) -> str:
    """The broker's config. Standalone (`mosquitto -c`), or the drop-in form for Debian's
    conf.d, whose main file already says where persistence goes. `plugin`: the dynamic security
    plugin's path (`site init` finds it on its machine; the bare name lets the loader find it)."""
    how_to_run = (_DROP_IN if drop_in else _STANDALONE).format(conf=files.conf)
    persistence = "" if drop_in else f"persistence_location {files.persistence}/\n"
    parts = [
        _HEADER.format(
            folder=files.folder,
            how_to_run=how_to_run,
            password_file=files.password_file,
            key=files.keyfile,
            data=files.persistence,
        ),
        _SETTINGS.format(
            plugin=plugin,
            dynsec_config=files.dynsec_config,
            password_file=files.password_file,
            acl_file=files.acl_file,
            persistence_location=persistence,
        ),
        _TLS_LISTENER.format(
            port=ports.tls, certfile=files.certfile, keyfile=files.keyfile, ca_file=files.ca_file
        ),
    ]
    if ports.loopback is not None:
        parts.append(_LOOPBACK_LISTENER.format(port=ports.loopback))
    return "".join(parts)


def password_line(user: str, password: str) -> str:
    """One line of a Mosquitto password file, hashed as mosquitto_passwd 2.0 does."""
    if not user or ":" in user or "\n" in user:
        raise ValueError(f"{user!r} cannot be a broker user name")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ROUNDS)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"{user}:$7${_PBKDF2_ROUNDS}${encoded[0]}${encoded[1]}\n"


def shipped_files() -> dict[str, str]:
    """deploy/mosquitto/'s files, by name: a site initialised in /etc/gatescan/site."""
    files = BrokerFiles.under(SHIPPED_FOLDER)
    return {
        "gatescan.conf": mosquitto_conf(files, BrokerPorts(), drop_in=True),
        ACL_NAME: ACL_RULES,
    }


if __name__ == "__main__":  # python -m server.site.broker_config deploy/mosquitto
    target = Path(sys.argv[1])
    for name, text in shipped_files().items():
        (target / name).write_text(text, encoding="utf-8")
