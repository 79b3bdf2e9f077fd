"""A site as `gatescan site init` writes it, and its Mosquitto run from the generated config as
written (`mosquitto -c DIR/mosquitto.conf`): what the TLS tests share.

Why not in tmp_path: run as root, Mosquitto 2.0.11 switches to the `mosquitto` user before it
reads its password file, and pytest's tmp_path sits under a 0700 folder only root may enter. The
site's folder is made in the system's temp folder instead, 0755 like /etc/gatescan/site, and
removed afterwards; `site init` gives the broker's own files to the `mosquitto` user, as it would
on a server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from gatescan.testing.broker import free_port, stop_mosquitto
from protocol.broker_tls import BrokerTls
from server.broker_admin.dynsec import AdminLogin
from server.collector.service import Collector, MqttClient
from server.site.broker_config import COLLECTOR_USER, password_line
from server.site.dynsec_config import ADMIN_USER
from server.site.installation import (
    ADMIN_PASSWORD_NAME,
    COLLECTOR_PASSWORD_NAME,
    Installation,
    SiteRequest,
    init_site,
)
from server.store.database import Store

STARTUP_TIMEOUT_S = 10.0


@contextmanager
def site_folder() -> Iterator[Path]:
    """An empty folder the broker can reach after dropping root; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="gatescan-site-"))
    folder.chmod(0o755)
    try:
        yield folder / "site"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def new_site(
    folder: Path, gates: Mapping[str, str] | None = None, host: str = "localhost"
) -> Installation:
    """`init_site` on free ports, plus a broker user for each gate (name: password)."""
    site = init_site(
        SiteRequest(
            folder,
            hosts=(host,),
            mqtt_port=free_port(),
            loopback_port=free_port(),
            web_port=free_port(),
            enrol_port=free_port(),
        )
    )
    with site.files.password_file.open("a", encoding="utf-8") as users:
        for gate, password in (gates or {}).items():
            users.write(password_line(gate, password))
    return site


def tls_port(site: Installation) -> int:
    return int(site.broker_url.rsplit(":", 1)[1])


def loopback_port(site: Installation) -> int:
    conf = site.files.conf.read_text(encoding="utf-8")
    [line] = [line for line in conf.splitlines() if line.endswith(" 127.0.0.1")]
    return int(line.split()[1])


class SiteBroker:
    """`mosquitto -c CONF`, its log (stderr) kept in a file beside it."""

    def __init__(self, conf: Path, port: int) -> None:
        self.conf = conf
        self.port = port
        self.log_path = conf.with_name(conf.name + ".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SiteBroker:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # Its TLS port answers before its last listener is open; "running" comes after all.
        while not (self._listening() and " running" in self.log()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"mosquitto -c {self.conf} did not start:\n{self.log()}")
            time.sleep(0.02)  # a port to poll: there is no event to wait on
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            stop_mosquitto(self.process)

    def __enter__(self) -> SiteBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def collector_password(site: Installation) -> str:
    """The collector's broker password, as `site init` wrote it beside server.toml."""
    return (site.files.folder / COLLECTOR_PASSWORD_NAME).read_text(encoding="utf-8").strip()


def admin_login(site: Installation) -> AdminLogin:
    """The broker admin's login (dynamic security), as `site init` wrote its password."""
    password = (site.files.folder / ADMIN_PASSWORD_NAME).read_text(encoding="utf-8").strip()
    return AdminLogin(site.broker_url, ADMIN_USER, password, BrokerTls(ca_file=site.files.ca_file))


def site_collector(site: Installation, store: Store) -> Collector:
    """The site's collector (not started), logged in as server.toml has it: the collector's
    broker user and password, the broker's certificate checked against the site's CA."""
    return Collector(
        broker_url=site.broker_url,
        store=store,
        client_id="collector",
        username=COLLECTOR_USER,
        password=collector_password(site),
        mqtt_client=MqttClient.TUNED,
        tls=BrokerTls(ca_file=site.files.ca_file),
    )


def site_broker(site: Installation) -> SiteBroker:
    """The site's own broker, from its mosquitto.conf, on its TLS port (not started)."""
    return SiteBroker(site.files.conf, tls_port(site))


def running_as_root() -> bool:
    return os.geteuid() == 0
