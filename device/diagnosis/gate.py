"""The gate's own parts: its enrolled identity, clock, camera, decoders, pins, disk and journal;
and whether its agent runs now (it holds the journal's lock, and with it the camera and pins).

Everything here only reads, but for two things done only while the agent is stopped: the camera
is opened and read for about two seconds, and each configured pin is claimed as an input for a
moment (never driven) to learn whether another process holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from device.app import LAST_TELEMETRY_FILE, open_source
from device.camera.source import CameraError, read_leased
from device.decode.base import DecoderError
from device.decode.zbar import PyzbarDecoder
from device.decode.zxing import ZxingDecoder
from device.diagnosis.findings import Finding, fail, ok, warn
from device.enrolment.identity import CA_FILE, GRANT_FILE, StoredIdentity, identity_dir
from device.journal.outbox import OUTBOX_FILE, read_outbox_counts
from device.system.clock import TIME_ERROR, TIMESYNCD_FLAG, kernel_clock_state
from device.system.facts import disk_space
from firmware_config.schema import (
    OUTPUT_PINS,
    GateConfig,
    OpenCVCamera,
    Picamera2Camera,
    ReplayCamera,
)
from protocol.enrolment import EnrolmentGrant
from protocol.messages import Telemetry

AS_THE_AGENT = "run the doctor as the agent's user: sudo -u gatescan gatescan doctor"
CAMERA_SECONDS = 2.0
DISK_FAIL_BYTES = 100 * 2**20  # the journal refuses scans well before the disk is full
DISK_WARN_BYTES = 2**30
DISK_WARN_FRACTION = 0.05
OUTBOX_WARN_DEPTH = 1000


# --- the agent ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentState:
    """Whether the gate's agent runs (None: cannot tell), and its last telemetry if any."""

    running: bool | None
    link: str | None = None
    last: Telemetry | None = None
    age_s: float | None = None


def agent_state(data_dir: Path) -> AgentState:
    """The agent holds an exclusive lock on its journal while it runs (device/journal/): a
    shared lock refused means it runs. The lock file is opened read-only, never created."""
    running = _journal_locked(data_dir / "journal" / "lock")
    path = data_dir / LAST_TELEMETRY_FILE
    try:
        record = json.loads(path.read_bytes())
        last = Telemetry.model_validate(record["telemetry"])
        link = str(record["link"])
        age = max(0.0, time.time() - path.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return AgentState(running)
    return AgentState(running, link, last, age)


def _journal_locked(lock: Path) -> bool | None:
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def check_agent_link(agent: AgentState) -> Finding:
    """The MQTT line while the agent runs: its own link, as its last telemetry kept it."""
    if agent.link is None or agent.age_s is None:
        return warn(
            "mqtt",
            "not checked: the running agent holds the gate's broker login and has kept no "
            "telemetry yet",
            "run the doctor again after its telemetry interval (30 s), or stop the agent",
        )
    when = f"its last telemetry, {agent.age_s:.0f} s ago"
    if agent.link == "up":
        return ok("mqtt", f"the running agent is connected ({when})")
    return fail(
        "mqtt",
        f"the running agent is not connected: {agent.link.replace('_', ' ')} ({when})",
        "stop the agent (systemctl stop gatescan-agent) and run the doctor again: its mqtt "
        "line then says what the broker answers",
    )


# --- identity -------------------------------------------------------------------------------------


def read_identity(data_dir: Path) -> tuple[Finding | None, StoredIdentity | None]:
    """The identity in the data dir, read without the agent's repairs (a damaged grant is not
    set aside, a changed ca.crt not written again). (None, None): the gate has none."""
    folder = identity_dir(data_dir)
    grant_path = folder / GRANT_FILE
    try:
        text = grant_path.read_bytes()
    except FileNotFoundError:
        return None, None
    except PermissionError:
        return fail("identity", f"cannot read {grant_path}: permission denied", AS_THE_AGENT), None
    except OSError as error:
        return fail("identity", f"cannot read {grant_path}: {error.strerror}", AS_THE_AGENT), None
    try:
        grant = EnrolmentGrant.model_validate_json(text)
    except ValidationError as error:
        return (
            fail(
                "identity",
                f"{grant_path} is damaged ({error.error_count()} problems): the agent sets it "
                "aside and waits in setup mode",
                "enrol the gate again: `gatescan gate replace ID` on the server, then show the "
                "gate its new card",
            ),
            None,
        )
    identity = StoredIdentity(grant, folder / CA_FILE)
    found = (
        f"enrolled as {grant.device_id} of site {grant.site_id or '(none)'}: broker "
        f"{grant.broker_url} as {grant.username} ({grant_path})"
    )
    try:
        ca_matches = identity.ca_file.read_text(encoding="utf-8") == grant.ca_pem
    except (OSError, UnicodeDecodeError):
        ca_matches = False
    if not ca_matches:
        return (
            warn(
                "identity",
                f"{found}; but {identity.ca_file} is missing or not the grant's CA",
                "the agent writes it again from the grant when it starts "
                "(systemctl restart gatescan-agent)",
            ),
            identity,
        )
    return ok("identity", found), identity


def check_configured_credentials(config: GateConfig) -> Finding:
    """A gate not enrolled: the broker and login its config gives, or setup mode."""
    folder = identity_dir(Path(config.data_dir))
    if config.mqtt.broker is None:
        return fail(
            "identity",
            f"not enrolled (no {GRANT_FILE} in {folder}) and no mqtt.broker: the gate waits in "
            "setup mode",
            "show the gate its enrolment card (`gatescan gate add ID --site SITE` on the "
            "server prints it), or put the card's code in enrol.txt beside the config",
        )
    password = config.mqtt.password()
    user = config.mqtt.username or config.device_id
    if password is None and config.mqtt.cert_file is None:
        return warn(
            "identity",
            f"not enrolled; the config's broker {config.mqtt.broker}, with no password",
            "a site's broker refuses a gate without one: enrol the gate, or give the password "
            "(mqtt.password_file, $GATESCAN_MQTT_PASSWORD or the systemd credential)",
        )
    how = "a client certificate" if password is None else "a password"
    return ok(
        "identity", f"not enrolled; the config's broker {config.mqtt.broker} as {user} with {how}"
    )


# --- clock ----------------------------------------------------------------------------------------


def check_clock(
    timesyncd_flag: Path = TIMESYNCD_FLAG,
    kernel_state: Callable[[], int | None] = kernel_clock_state,
) -> Finding:
    """As device/system/clock.py's SystemClock tells: timesyncd's flag file, else the kernel's
    NTP state (adjtimex)."""
    now = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC"
    if timesyncd_flag.exists():
        return ok("clock", f"{now}, synchronised (systemd-timesyncd: {timesyncd_flag})")
    state = kernel_state()
    if state is not None and state != TIME_ERROR:
        return ok("clock", f"{now}, synchronised (the kernel's NTP state {state})")
    return warn(
        "clock",
        f"{now}, not synchronised: events say clock_synced false, and certificate dates are "
        "judged by a clock that may be wrong",
        "the gate must reach an NTP server (UDP 123): `timedatectl timesync-status`; check the "
        "network and NTP= in /etc/systemd/timesyncd.conf",
    )


# --- camera ---------------------------------------------------------------------------------------


def check_camera(config: GateConfig, agent: AgentState, seconds: float = CAMERA_SECONDS) -> Finding:
    camera = config.camera
    if agent.running:
        return _camera_of_the_agent(agent)
    if agent.running is None:
        return warn(
            "camera",
            "not checked: cannot tell whether the agent runs (its journal lock is not readable)",
            AS_THE_AGENT,
        )
    try:
        source = open_source(config)
    except CameraError as error:
        return fail("camera", f"cannot open the {camera.type} camera: {error}", _camera_fix(config))
    frames = 0
    size = ""
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            lease = read_leased(source)
            height, width = lease.frame.shape[:2]
            size = f"{width}x{height}"
            if lease.release is not None:
                lease.release()
            frames += 1
    except CameraError as error:
        if frames == 0:
            return fail(
                "camera", f"no frame from the {camera.type} camera: {error}", _camera_fix(config)
            )
    finally:
        source.close()
    elapsed = time.monotonic() - started
    if frames == 0:
        return fail("camera", f"no frame in {elapsed:.1f} s", _camera_fix(config))
    fps = frames / elapsed
    found = f"{frames} frames in {elapsed:.1f} s: {fps:.1f} fps, {size} ({camera.type})"
    asked = camera.fps if isinstance(camera, Picamera2Camera | ReplayCamera) else None
    if asked is not None and fps < asked / 2:
        return warn(
            "camera",
            f"{found}, half the {asked:g} fps asked or less",
            "the camera or its cable is slow, or the machine is busy (see the temperature and "
            "throttling in the gate's status)",
        )
    return ok("camera", found)


def _camera_of_the_agent(agent: AgentState) -> Finding:
    held = "held by the running agent (it holds the journal's lock)"
    if agent.last is None or agent.age_s is None:
        return ok("camera", f"{held}; no telemetry from it yet to read its fps from")
    when = f"over its last telemetry interval, {agent.age_s:.0f} s ago"
    if "camera" in agent.last.faults or agent.last.fps == 0:
        return fail(
            "camera",
            f"{held}, which reports no frames ({agent.last.fps:g} fps {when})",
            "check the camera's cable; stop the agent (systemctl stop gatescan-agent) and run "
            "the doctor again to test the camera alone",
        )
    return ok("camera", f"{held}: {agent.last.fps:.1f} fps {when}")


def _camera_fix(config: GateConfig) -> str:
    camera = config.camera
    if isinstance(camera, Picamera2Camera):
        return (
            "check the ribbon cable (both ends, contacts the right way) and that "
            "`rpicam-hello --list-cameras` lists the camera"
        )
    if isinstance(camera, OpenCVCamera):
        return f"check that {camera.target} exists and is not used by another program"
    return f"check camera.folder ({camera.folder}): images (.png, .jpg) in it"


# --- decoders -------------------------------------------------------------------------------------


def check_decoders(config: GateConfig) -> Finding:
    """zbar loads (and decodes a blank frame); zxing-cpp too when the backend needs it."""
    backend = config.decoder.backend
    blank = np.zeros((64, 64), dtype=np.uint8)
    present: dict[str, str | None] = {}  # name -> None when loaded, else the problem
    for name, make in (("zbar", PyzbarDecoder), ("zxing-cpp", ZxingDecoder)):
        try:
            make().decode(blank)
            present[name] = None
        except DecoderError as error:
            present[name] = str(error)
    needed = {"pyzbar": ["zbar"], "zxing": ["zxing-cpp"], "ensemble": ["zxing-cpp"]}.get(
        backend, []
    )
    loaded = [name for name, problem in present.items() if problem is None]
    missing = [name for name in needed if present[name] is not None]
    if missing:
        return fail(
            "decoders",
            f"decoder.backend {backend} needs {missing[0]}: {present[missing[0]]}",
            "install it (the Pi's bundle has both: libzbar0 from apt, zxing-cpp from the "
            "wheels), or choose another decoder.backend",
        )
    if not loaded:
        return fail(
            "decoders",
            f"neither zbar nor zxing-cpp loads ({present['zbar']})",
            "install libzbar0 (apt install libzbar0) or zxing-cpp",
        )
    found = f"loaded: {', '.join(loaded)}; decoder.backend {backend}"
    if present["zbar"] is not None:
        return warn(
            "decoders",
            f"{found}; zbar does not load ({present['zbar']})",
            "the ensemble reads fewer damaged codes without it: apt install libzbar0",
        )
    return ok("decoders", found)


# --- GPIO -----------------------------------------------------------------------------------------


def configured_pins(config: GateConfig) -> list[tuple[str, int]]:
    pins = config.indicator
    named = [(name, getattr(pins, name)) for name in OUTPUT_PINS]
    named += [
        ("fire_alarm", pins.door.fire_alarm_pin),
        ("release_button", pins.door.release_button_pin),
    ]
    return [(name, pin) for name, pin in named if pin is not None]


def check_gpio(config: GateConfig, agent: AgentState, pin_factory: Any, on_a_pi: bool) -> Finding:
    """Each configured pin (BCM 0..27, each once: the config's own checks) claimed as an input
    for a moment, never driven: another process holding it is refused."""
    from gpiozero import DigitalInputDevice

    if not config.indicator.enabled:
        return ok("gpio", "indicator.enabled is false: no pins used")
    pins = configured_pins(config)
    listed = ", ".join(f"{name} {pin}" for name, pin in pins)
    if agent.running:
        return ok("gpio", f"held by the running agent: {listed} (BCM)")
    if agent.running is None:
        return warn("gpio", "not checked: cannot tell whether the agent runs", AS_THE_AGENT)
    for name, pin in pins:
        try:
            device = DigitalInputDevice(
                pin, pull_up=None, active_state=True, pin_factory=pin_factory
            )
        except Exception as error:  # gpiozero's GPIOPinInUse, lgpio's "GPIO busy", ...
            return fail(
                "gpio",
                f"pin {pin} ({name}) cannot be claimed: {error}",
                "another process holds it (`gpioinfo` names it; a second gatescan agent?): "
                "stop it, or give [indicator] another pin",
            )
        device.close()
    if not on_a_pi:
        return warn(
            "gpio",
            f"free: {listed} (BCM); not a Raspberry Pi, so checked on gpiozero's mock pins",
            "run the doctor on the gate itself",
        )
    return ok("gpio", f"free: {listed} (BCM)")


# --- disk and journal -----------------------------------------------------------------------------


def check_disk(data_dir: Path) -> Finding:
    space = disk_space(data_dir)
    if space is None:
        return fail(
            "disk",
            f"{data_dir} does not exist or cannot be read",
            "is --data-dir the agent's data_dir? The agent's unit makes /var/lib/gatescan",
        )
    free, total = space.free_bytes, space.total_bytes
    found = f"{_size(free)} free of {_size(total)} on {data_dir}'s disk"
    if free < DISK_FAIL_BYTES:
        return fail(
            "disk",
            found,
            "the journal will refuse scans: free space (old logs: journalctl --vacuum-size=50M)",
        )
    if free < DISK_WARN_BYTES or free < total * DISK_WARN_FRACTION:
        return warn("disk", found, "free space before the journal runs out of it")
    return ok("disk", found)


def _size(count: int) -> str:
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.0f} MiB"


def check_journal(data_dir: Path) -> Finding:
    outbox = data_dir / "journal" / OUTBOX_FILE
    try:
        counts = read_outbox_counts(outbox)
    except FileNotFoundError:
        if outbox.parent.is_dir():  # the outbox log is made with the first event
            return ok("journal", "readable: 0 event(s) in the outbox, none recorded yet")
        return warn(
            "journal",
            f"no journal in {data_dir} yet",
            "the agent makes it when it first runs; is --data-dir the agent's data_dir?",
        )
    except PermissionError:
        return fail("journal", f"cannot read {outbox}: permission denied", AS_THE_AGENT)
    except OSError as error:
        return fail("journal", f"cannot read {outbox}: {error.strerror}", "check the SD card")
    found = f"readable: {counts.pending} event(s) in the outbox waiting for the collector"
    if counts.damaged_line is not None:
        return warn(
            "journal",
            f"{found}; line {counts.damaged_line} of {outbox} is damaged",
            "the agent keeps the damaged file aside and goes on at its next start; if it "
            "recurs, the SD card is failing",
        )
    if counts.rejected:
        return warn(
            "journal",
            f"{found}; {counts.rejected} set aside as rejected",
            "`gatescan journal rejected` lists them; once the cause is fixed, "
            "`gatescan journal requeue --all` with the agent stopped",
        )
    if counts.pending > OUTBOX_WARN_DEPTH:
        return warn(
            "journal",
            found,
            "many events wait: the gate has been offline or the collector is not acking (see "
            "the mqtt line)",
        )
    return ok("journal", f"{found}, none rejected")
