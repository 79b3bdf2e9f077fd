"""`gatescan backup` and `gatescan restore` on real parts: `gatescan site init`'s installation,
its Mosquitto run from the generated config (TLS, the dynamic security plugin), `gatescan server
--config` as a process, a gate enrolled end to end over HTTPS, and the gate's own Uplink and
journal. Backed up while everything runs; the installation and its database deleted; restored
into another folder; the broker and server started from there: the same gate, with the login
it was granted before (not enrolled again), delivers a new event, and it is stored beside the
old one.

Beside it, the checks that refuse: a backup that does not match its manifest, an existing
installation or database without --force.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from device.journal.journal import Journal
from device.uplink.link import Uplink
from gatescan.testing.samples import sample_draft
from protocol.broker_tls import BrokerTls
from protocol.enrolment import EnrolmentGrant, parse_enrolment_code
from server.site.broker_config import BrokerFiles
from server.store.database import Store
from tests.support.cli import run_gatescan
from tests.support.enrol_client import enrol
from tests.support.paths import PROJECT_ROOT
from tests.support.tls_site import SiteBroker, new_site, site_broker, site_folder, tls_port
from tests.support.waiting import wait_until

TIMEOUT = 20.0
GATE = "gate-hq-07"


@contextmanager
def running_server(config: Path, log_path: Path) -> Iterator[None]:
    """`gatescan server --config CONFIG` until the block ends, once its enrolment service
    answers and its collector subscribed."""
    text = config.read_text(encoding="utf-8")
    found = re.search(r'enrol_listen = "0\.0\.0\.0:(\d+)"', text)
    assert found
    port = int(found.group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATESCAN_")}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatescan.cli", "server", "--config", str(config)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(log_path.read_text(encoding="utf-8"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return "subscribed to" in log_path.read_text(encoding="utf-8")

    try:
        wait_until(started, TIMEOUT, "the server's enrolment service and collector")
        yield
    finally:
        process.terminate()
        process.wait(timeout=15)


def deliver(journal: Journal, grant: EnrolmentGrant, ca_file: Path) -> str:
    """One new scan of the gate, sent by its Uplink until the collector acknowledged it."""
    event = journal.record(sample_draft(device_id=grant.device_id, site_id=grant.site_id))
    uplink = Uplink(
        device_id=grant.device_id, broker_url=grant.broker_url, journal=journal,
        version="1.4.0", boot_id="boot-1", resend_after=0.5, username=grant.username,
        password=grant.password, tls=BrokerTls(ca_file=ca_file),
    )  # fmt: skip
    uplink.start()
    try:
        wait_until(lambda: journal.outbox_depth() == 0, TIMEOUT, "the collector's ack")
    finally:
        uplink.stop()
    return event.event_id


def test_back_up_wipe_restore_and_the_enrolled_gate_delivers_again(tmp_path: Path) -> None:
    with site_folder() as folder:
        site = new_site(folder)
        scratch = folder.parent
        backup = scratch / "backup"
        restored = scratch / "restored"
        ca_file = tmp_path / "gate-ca.crt"
        with Journal(tmp_path / "journal") as journal:
            with site_broker(site), running_server(site.server_config, scratch / "server.log"):
                qr = scratch / f"{GATE}.png"
                added = run_gatescan(["gate", "add", GATE, "--site", "hq", "--qr", str(qr),
                                      "--config", str(site.server_config)])  # fmt: skip
                assert added.returncode == 0, added.stderr
                found = re.search(r"code: (\S+)", added.stdout)
                assert found, added.stdout
                grant = enrol(parse_enrolment_code(found.group(1))).grant
                ca_file.write_text(grant.ca_pem, encoding="ascii")
                before = deliver(journal, grant, ca_file)

                started = time.monotonic()
                done = run_gatescan(["backup", str(backup), "--config", str(site.server_config)])
                took = time.monotonic() - started
                assert done.returncode == 0, done.stderr
                print(f"\nbackup of a running installation: {took * 1000:.0f} ms")
            # The machine is lost: its installation and its database with it.
            shutil.rmtree(site.files.folder)

            done = run_gatescan(["restore", str(backup), "--to", str(restored)])
            assert done.returncode == 0, done.stderr
            files = BrokerFiles.under(restored)
            assert (files.ca_file.with_name("ca.key").stat().st_mode & 0o777) == 0o600
            assert (files.dynsec_config.stat().st_mode & 0o777) == 0o600
            assert (files.persistence.stat().st_mode & 0o777) == 0o700
            assert str(site.files.folder) not in files.conf.read_text(encoding="utf-8")

            broker = SiteBroker(files.conf, tls_port(site))
            with broker, running_server(restored / "server.toml", scratch / "server2.log"):
                after = deliver(journal, grant, ca_file)  # the same login, not enrolled again
                listing = run_gatescan(["gate", "list", "--config", str(restored / "server.toml")])
        with Store(restored / "gatescan.db") as store:
            assert {entry.event_id for entry in store.entries()} == {before, after}
        [row] = [line for line in listing.stdout.splitlines() if line.startswith(GATE)]
        assert " enrolled " in row


def test_the_manifest_names_every_file_with_its_mode_and_sha256(tmp_path: Path) -> None:
    with site_folder() as folder:
        site = new_site(folder)
        Store(site.files.folder / "gatescan.db").close()
        backup = folder.parent / "backup"
        done = run_gatescan(["backup", str(backup), "--config", str(site.server_config)])
        assert done.returncode == 0, done.stderr
        manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
        files = {entry["path"]: entry for entry in manifest["files"]}
        assert manifest["format"] == "gatescan-backup/1" and manifest["gatescan_version"]
        assert manifest["database_kind"] == "sqlite"
        assert {
            "site/ca.key", "site/ca.crt", "site/server.toml", "site/mosquitto.passwd",
            "site/gatescan.acl", "site/mosquitto-data/dynamic-security.json",
            "database/gatescan.db",
        } <= set(files)  # fmt: skip
        for secret in ("site/ca.key", "site/broker.key", "site/collector.password"):
            assert files[secret]["mode"] == "0600"
            assert (backup / secret).stat().st_mode & 0o777 == 0o600
        assert (backup.stat().st_mode & 0o777) == 0o700

        again = run_gatescan(["backup", str(backup), "--config", str(site.server_config)])
        assert again.returncode == 2 and "not empty" in again.stderr


def test_a_restore_checks_every_file_first_and_replaces_nothing_unasked(tmp_path: Path) -> None:
    with site_folder() as folder:
        site = new_site(folder)
        Store(site.files.folder / "gatescan.db").close()
        backup = folder.parent / "backup"
        assert (
            run_gatescan(["backup", str(backup), "--config", str(site.server_config)]).returncode
            == 0
        )

        refused = run_gatescan(["restore", str(backup), "--to", str(site.files.folder)])
        assert refused.returncode == 2 and "--force" in refused.stderr, refused.stderr
        assert run_gatescan(["restore", str(backup), "--to", str(site.files.folder), "--force"]
                            ).returncode == 0  # fmt: skip

        with (backup / "site" / "ca.crt").open("a", encoding="ascii") as changed:
            changed.write("\n")
        target = folder.parent / "elsewhere"
        tampered = run_gatescan(["restore", str(backup), "--to", str(target)])
        assert tampered.returncode == 2
        assert "site/ca.crt" in tampered.stderr and "SHA-256" in tampered.stderr
        assert not target.exists()  # nothing written
