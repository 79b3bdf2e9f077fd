"""The shipped systemd units (deploy/systemd/), judged by systemd's own analyzer and by running
the server unit's command the way the unit runs it.

- `systemd-analyze security --offline=yes UNIT-FILE` scores each unit's exposure (0 safe, 10
  exposed; the last line reads `→ Overall exposure level for NAME: 1.5 OK 🙂`). Issue 13's bar is
  4.0; each unit also has a ceiling at today's figure, so that loosening a setting is a decision
  taken here, with its reason, not a drift. The overall figure is a weighted mean that one
  small setting may not move, so the checks each unit leaves exposed (✗) are pinned too, each
  with its reason. The server-side units, which need no device, sit below the agent.
- `systemd-analyze verify` loads each unit as the manager would and says what it cannot parse or
  run. Offline it checks that ExecStart's program exists and that the units every service depends
  on by default (sysinit.target, basic.target, shutdown.target) load: so it runs with `--root` on
  a small tree that holds the unit, an executable at ExecStart's path and those three targets.
  Its warnings (an unknown key, a bad value) leave its exit code 0: the test wants no output.
- This container does not run systemd as PID 1, so no test starts a unit. What stands in: each
  unit's own command line run as the unit runs it, under its UMask= in a state directory of
  StateDirectoryMode=, then every file and folder it made is checked private. The server's (its
  flags, its credential by LoadCredential='s name, its database under the state directory) logs
  in to a broker with the site's ACL; the agent's reads a replay camera and journals a scan. The
  database is 0600 whatever the umask (Store sees to it); the journal's folders are private only
  through the unit's umask (0755 under the usual 022).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import pytest

from firmware_config.schema import DEFAULT_DATA_DIR
from gatescan.cli import build_parser
from gatescan.commands.server import parse_listen
from gatescan.testing.broker import LocalBroker, free_port
from gatescan.testing.samples import render_code, sample_people
from tests.support.tls_site import new_site, site_broker, site_folder
from tests.support.units import (
    AGENT_UNIT,
    COLLECTOR_UNIT,
    SERVER_UNIT,
    UNIT_NAMES,
    UNITS_DIR,
    exec_start,
    option,
    read_unit,
    service_setting,
    state_directory,
    systemd_analyze,
    verify_unit,
)
from tests.support.waiting import wait_until

ISSUE_13_BAR = 4.0
# Today's figures with systemd 252 (Debian 12). Before issue 13: 8.5 each (no server unit).
# The server's 1.0 (0.9 before issue 14): its enrolment service answers gates on the LAN, so its
# IP allow list names the private ranges beside loopback, and systemd-analyze scores the wider list.
CEILINGS = {AGENT_UNIT: 1.5, COLLECTOR_UNIT: 0.9, SERVER_UNIT: 1.0}
SERVER_SIDE = (COLLECTOR_UNIT, SERVER_UNIT)
OVERALL = re.compile(
    r"Overall exposure level for (?P<unit>\S+): (?P<score>\d+\.\d+) (?P<verdict>\w+)"
)
SERVICE_USER = "gatescan"


# What each unit still leaves open, by the names of systemd-analyze's checks, and why. A setting
# loosened (or a check a newer systemd adds) fails the test until it is named here with a reason.
EVERY_UNIT = {
    "PrivateNetwork=": "each process talks MQTT (and the server serves HTTP)",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "the same",
    "RestrictAddressFamilies=~AF_UNIX": "sd_notify (agent); a PostgreSQL socket (server side)",
    "RootDirectory=/RootImage=": "it runs from the host's /opt/gatescan virtualenv",
    "DeviceAllow=": "ProtectClock= itself lets it read the RTC (char-rtc r)",
}
STILL_OPEN = {
    AGENT_UNIT: EVERY_UNIT
    | {
        "IPAddressDeny=": "the broker's address and the DNS server's are the site's",
        "PrivateDevices=": "the camera and the pins: a device allow list instead",
        "SupplementaryGroups=": "video and gpio, which own the camera's and the pins' nodes",
        "PrivateUsers=": "would not map those groups",
        "ProcSubset=": "/proc/device-tree tells it and gpiozero which Pi this is",
        "RestrictAddressFamilies=~AF_NETLINK": "libcamera's udev monitor",
    },
    COLLECTOR_UNIT: EVERY_UNIT | {"IPAddressDeny=": "scored 0.1 even for a loopback-only list"},
    SERVER_UNIT: EVERY_UNIT | {"IPAddressDeny=": "scored 0.1 even for a loopback-only list"},
}


def security(unit_file: Path) -> tuple[float, set[str]]:
    """The overall exposure `systemd-analyze security --offline=yes` gives a unit file, and the
    names of the checks it marks ✗ (the exposed ones)."""
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit_file)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # Anything on stderr is a setting systemd could not read ("Unknown key ..."), scored as unset.
    assert done.stderr == "", done.stderr
    (found,) = OVERALL.findall(done.stdout)
    assert found[0] == unit_file.name, done.stdout
    exposed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("✗")}
    return float(found[1]), exposed


def exposure(unit_file: Path) -> float:
    return security(unit_file)[0]


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_unit_is_at_most_4_exposed_in_systemd_analyze_security(name: str) -> None:
    score = exposure(UNITS_DIR / name)
    assert score <= ISSUE_13_BAR
    assert score <= CEILINGS[name], f"{name} scores {score}, over its ceiling {CEILINGS[name]}"


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_unit_leaves_open_only_what_it_needs(name: str) -> None:
    assert security(UNITS_DIR / name)[1] == set(STILL_OPEN[name])


def test_the_server_side_units_are_less_exposed_than_the_agent() -> None:
    agent = exposure(UNITS_DIR / AGENT_UNIT)
    for name in SERVER_SIDE:
        assert exposure(UNITS_DIR / name) < agent, name


def test_a_unit_without_sandboxing_is_over_the_bar(tmp_path: Path) -> None:
    """The measure can fail: the collector's command as a bare unit scores far over 4."""
    bare = tmp_path / "bare.service"
    command = service_setting(read_unit(COLLECTOR_UNIT), "ExecStart")
    bare.write_text(f"[Service]\nExecStart={command}\nUser={SERVICE_USER}\n", encoding="utf-8")
    assert exposure(bare) > ISSUE_13_BAR


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_systemd_verifies_each_unit(tmp_path: Path, name: str) -> None:
    text = (UNITS_DIR / name).read_text(encoding="utf-8")
    assert verify_unit(tmp_path / "root", name, text) == ""


def test_verify_reports_a_mistyped_setting(tmp_path: Path) -> None:
    """The check can fail: a misspelt key and a bad mode are reported."""
    text = (UNITS_DIR / SERVER_UNIT).read_text(encoding="utf-8")
    text = text.replace("ProtectHome=yes", "ProtectHom=yes").replace("UMask=0077", "UMask=0978")
    said = verify_unit(tmp_path / "root", SERVER_UNIT, text)
    assert "Unknown key 'ProtectHom'" in said
    assert "0978" in said


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_unit_keeps_what_it_writes_to_its_own_user(name: str) -> None:
    unit = read_unit(name)
    assert service_setting(unit, "UMask") == "0077"
    assert service_setting(unit, "StateDirectoryMode") == "0700"
    assert service_setting(unit, "User") == SERVICE_USER
    assert "DynamicUser" not in unit["Service"]


def test_each_process_writes_inside_its_state_directory() -> None:
    """ProtectSystem=strict leaves only the StateDirectory= writable: the database and the
    journal must be there."""
    agent = read_unit(AGENT_UNIT)
    assert state_directory(agent) == DEFAULT_DATA_DIR
    assert "--data-dir" not in exec_start(agent)
    for name in SERVER_SIDE:
        unit = read_unit(name)
        db = Path(option(exec_start(unit), "--db").removeprefix("sqlite:///"))
        assert db.parent == state_directory(unit), name


def test_the_server_unit_purges_and_serves_only_the_proxy() -> None:
    args = build_parser().parse_args(exec_start(read_unit(SERVER_UNIT))[1:])
    assert args.run.__name__ == "run_server"
    assert args.retention_days > 0
    assert args.secure_cookies
    assert parse_listen(args.listen).host == "127.0.0.1"


def test_the_collector_and_the_server_never_run_together() -> None:
    """Both log in as the broker user `collector`; the broker (use_username_as_clientid) would
    hand the session from one to the other, for ever."""
    server, collector = read_unit(SERVER_UNIT), read_unit(COLLECTOR_UNIT)
    assert option(exec_start(server), "--config") == option(exec_start(collector), "--config")
    assert server["Unit"]["Conflicts"] == [COLLECTOR_UNIT]
    assert collector["Unit"]["Conflicts"] == [SERVER_UNIT]


def test_the_server_units_command_leaves_only_private_files(tmp_path: Path) -> None:
    """The unit's command line on an installation `site init` wrote (its server.toml, its TLS
    broker run from its mosquitto.conf), under the unit's umask, with the password handed over as
    LoadCredential= does: the collector subscribes, the purge runs, the login page's cookies are
    Secure, and nothing in the state directory is open to others."""
    unit = read_unit(SERVER_UNIT)
    args = exec_start(unit)[1:]
    with site_folder() as folder:
        site = new_site(folder)
        # The secrets as LoadCredential= hands them over: files named as the credentials.
        credentials = tmp_path / "credentials"
        credentials.mkdir(mode=0o700)
        named = dict(c.partition(":")[::2] for c in unit["Service"]["LoadCredential"])
        assert set(named) == {"mqtt_password", "admin_password", "enrol_key"}
        for name, source in named.items():
            # Each is the installation's own file, beside the server.toml the unit names.
            assert Path(source).parent == Path(option(args, "--config")).parent
            secret = (site.files.folder / Path(source).name).read_bytes()
            (credentials / name).write_bytes(secret)
            if name != "mqtt_password":  # gone from the folder: the credential must be what is used
                (site.files.folder / Path(source).name).unlink()
        state = tmp_path / "state"
        state.mkdir(mode=int(service_setting(unit, "StateDirectoryMode"), 8))
        port = free_port()
        with site_broker(site):
            args[args.index("--config") + 1] = str(site.server_config)
            db = option(args, "--db")
            args[args.index("--db") + 1] = db.replace(str(state_directory(unit)), str(state))
            args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
            log = tmp_path / "server.log"
            with log.open("w", encoding="utf-8") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "gatescan.cli", *args],
                    cwd=state,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)},
                    umask=int(service_setting(unit, "UMask"), 8),
                )
                try:
                    wait_until(lambda: "subscribed to" in log.read_text(), 30, "the collector")
                    wait_until(lambda: "retention: deleted" in log.read_text(), 30, "the purge")
                    url = f"http://127.0.0.1:{port}/login"
                    with urllib.request.urlopen(url, timeout=5) as page:
                        cookies = page.headers.get_all("set-cookie") or []
                finally:
                    process.send_signal(signal.SIGTERM)
                    code = process.wait(timeout=30)
    said = log.read_text()
    assert code == 0, said
    assert "mqtts://localhost" in said, said
    assert "gatescan enrolment service on https://0.0.0.0:" in said, said
    assert cookies and all("Secure" in cookie for cookie in cookies), cookies
    assert Path(option(args, "--db").removeprefix("sqlite:///")).stat().st_size, said
    assert private(state) == []


def private(folder: Path) -> list[str]:
    """What in `folder` (itself included) others may read, write or enter: empty when none."""
    return [
        f"{path} is {stat.S_IMODE(path.stat().st_mode):04o}"
        for path in [folder, *sorted(folder.rglob("*"))]
        if path.stat().st_mode & 0o077
    ]


def test_the_agent_units_command_keeps_its_journal_private(
    tmp_path: Path, broker: LocalBroker
) -> None:
    unit = read_unit(AGENT_UNIT)
    camera = tmp_path / "camera"
    camera.mkdir()
    frame = render_code(sample_people()[0], frame_size=(640, 480), module_px=4)
    assert cv2.imwrite(str(camera / "0001.png"), frame)
    args = exec_start(unit)[1:]
    args[args.index("--config") + 1] = str(tmp_path / "gate.toml")
    (tmp_path / "gate.toml").write_text(
        f'[camera]\ntype = "replay"\nfolder = {json.dumps(str(camera))}\nloop = true\n',
        encoding="utf-8",
    )
    state = tmp_path / "state"
    state.mkdir(mode=int(service_setting(unit, "StateDirectoryMode"), 8))
    overrides = ["--broker", broker.url, "--device-id", "gate-units", "--data-dir", str(state)]
    log = tmp_path / "agent.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatescan.cli", *args, *overrides],
            stdout=output,
            stderr=subprocess.STDOUT,
            umask=int(service_setting(unit, "UMask"), 8),
        )
        try:
            wait_until(lambda: "journaled as seq 1" in log.read_text(), 30, "a scan journaled")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    assert code == 0, log.read_text()
    assert any(path.is_file() and path.stat().st_size for path in state.rglob("*"))
    assert private(state) == []


def test_the_agent_unit_starts_on_a_gate_that_has_no_password_yet() -> None:
    """An enrolling gate has no password file: a LoadCredential= whose file is missing stops
    systemd from starting the unit at all (the credential goes in a drop-in for a gate given its
    broker by hand; the unit's header says how)."""
    assert "LoadCredential" not in read_unit(AGENT_UNIT)["Service"]


def test_reloading_the_agent_unit_sends_sighup_which_applies_the_config_live() -> None:
    """`systemctl reload gatescan-agent`: the agent reads its file and kept push again and applies
    what can change live (tests/gatescan/commands/test_agent_config_push.py runs that signal)."""
    assert service_setting(read_unit(AGENT_UNIT), "ExecReload") == "/bin/kill -HUP $MAINPID"
