"""The gate's configuration: what a technician writes on the SD card, as typed pydantic models.

Every section forbids unknown keys, so a typo is an error with a suggestion (see errors.py), not a
setting silently ignored. Limits live on the fields, where they also document themselves in the
JSON schema (`GateConfig.model_json_schema()`). The MQTT password is never part of the file: the
loader finds it (environment, systemd credential, password_file) and hands it to `MqttConfig`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from firmware_config.errors import PASSWORD_HOMES
from protocol.broker_tls import BrokerTls
from protocol.broker_url import BrokerAddress, CredentialsInBrokerUrl, parse_broker_url
from protocol.topics import DEVICE_ID_PATTERN
from protocol.verdicts import GATE_CREDENTIAL_TYPES, CredentialType, Direction

DEFAULT_DATA_DIR = Path("/var/lib/gatescan")
MAX_DEVICE_ID = 64


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values do not change after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- camera: one of three backends, picked by `type` ---------------------------------------------


class CameraSection(Section):
    """What every camera shares: which part of each frame is decoded, and at what scale."""

    roi: list[float] | None = Field(
        None,
        description="Region of interest [x, y, width, height] as fractions of the frame (0..1), "
        "e.g. [0.25, 0, 0.5, 1] for the middle half; none: the whole frame.",
    )
    decode_scale: float = Field(
        1.0,
        ge=0.2,
        le=1.0,
        description="Scale of the region before decoding (0.2..1): 0.5 decodes a quarter of the "
        "pixels; codes need about 3 pixels per module after scaling.",
    )

    @field_validator("roi")
    @classmethod
    def _roi_inside_the_frame(cls, roi: list[float] | None) -> list[float] | None:
        if roi is None:
            return None
        if len(roi) != 4:
            raise ValueError(f"give 4 numbers [x, y, width, height], not {len(roi)}")
        x, y, width, height = roi
        if not all(0 <= value <= 1 for value in roi):
            raise ValueError(
                f"the numbers are fractions of the frame from 0 to 1, not pixels: got {roi}"
            )
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be more than 0: got {roi}")
        if x + width > 1 + 1e-9 or y + height > 1 + 1e-9:  # 0.1 + 0.9 may sum past 1.0
            raise ValueError(f"x + width and y + height must be at most 1 (the frame): got {roi}")
        return roi


MAX_LENS_DIOPTRES = 32.0  # Camera Module 3's LensPosition range is 0 to 32 (about 3 cm)


class Picamera2Camera(CameraSection):
    """The Raspberry Pi camera module, through picamera2."""

    type: Literal["picamera2"] = "picamera2"
    width: int = Field(1280, ge=64, le=4608, description="Frame width in pixels.")
    height: int = Field(720, ge=64, le=2592, description="Frame height in pixels.")
    fps: float = Field(30.0, ge=1, le=120, description="Frames per second asked of the sensor.")
    focus: Literal["auto"] | float = Field(
        "auto",
        description="Cameras with autofocus (Camera Module 3): 'auto' focuses continuously; a "
        "number holds the lens at that many dioptres (1 / distance in metres: 5 is sharpest at "
        "20 cm, 2.5 at 40 cm, 0 at infinity). Ignored by fixed-focus cameras.",
    )

    @field_validator("focus", mode="before")
    @classmethod
    def _focus_is_auto_or_dioptres(cls, focus: object) -> object:
        if focus == "auto":
            return focus
        if isinstance(focus, bool) or not isinstance(focus, int | float):
            raise ValueError(
                f"give 'auto' (continuous autofocus) or the lens position in dioptres, "
                f"1 / distance in metres (5 for 20 cm), not {focus!r}"
            )
        if not 0 <= focus <= MAX_LENS_DIOPTRES:
            raise ValueError(
                f"the lens position is 0 (infinity) to {MAX_LENS_DIOPTRES:g} dioptres "
                f"(1 / distance in metres: 5 for 20 cm), not {focus!r}"
            )
        return float(focus)


class OpenCVCamera(CameraSection):
    """A USB camera, a video file or a network stream, through OpenCV."""

    type: Literal["opencv"] = "opencv"
    target: str = Field(
        min_length=1,
        description="'/dev/video0', a camera number such as '0', a video file, or 'rtsp://...'.",
    )
    width: int | None = Field(None, ge=16, le=8192, description="Width to ask for; None: as is.")
    height: int | None = Field(None, ge=16, le=8192, description="Height to ask for; None: as is.")
    fps: float | None = Field(None, gt=0, le=240, description="Rate to ask for; None: as is.")


class ReplayCamera(CameraSection):
    """A folder of images shown one after another: for demos, tests and benchmarks."""

    type: Literal["replay"] = "replay"
    folder: Path = Field(description="Folder of images (.png, .jpg), shown in name order.")
    fps: float = Field(10.0, gt=0, le=120, description="Frames per second produced.")
    hold: float = Field(1.0, gt=0, le=3600, description="Seconds each image is shown.")
    loop: bool = Field(False, description="Start again after the last image.")


CameraConfig = Annotated[Picamera2Camera | OpenCVCamera | ReplayCamera, Field(discriminator="type")]


# --- scanning and deciding ------------------------------------------------------------------------


class DecoderConfig(Section):
    backend: Literal["auto", "ensemble", "zxing", "pyzbar"] = Field(
        "auto",
        description=(
            "QR decoder: auto (the best installed: ensemble with zxing-cpp, else pyzbar), "
            "ensemble (zxing-cpp, plus zbar and image filters where a code is likely but "
            "unread), zxing (zxing-cpp alone), or pyzbar."
        ),
    )
    repeat_window: float = Field(
        3.0, ge=0, le=600, description="Seconds within which the same code is the same showing."
    )


_GATE_KINDS = tuple(kind.value for kind in GATE_CREDENTIAL_TYPES)


def _gate_kind(value: Any) -> Any:
    """A kind of code a gate reads: never `self`, a self check-in's (server/checkin/), which a
    gate neither reads nor accepts; refused as any unknown kind is, with the gate's choices."""
    if isinstance(value, str) and value in _GATE_KINDS:
        return value
    expected = ", ".join(f"'{kind}'" for kind in _GATE_KINDS[:-1]) + f" or '{_GATE_KINDS[-1]}'"
    raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})


GateKind = Annotated[
    CredentialType,
    BeforeValidator(_gate_kind),
    WithJsonSchema({"type": "string", "enum": list(_GATE_KINDS)}),
]


class PolicyConfig(Section):
    mode: Literal["log", "access"] = Field(
        "log",
        description=(
            "log: record every entry, stop nobody; access: grant a valid issued pass and a card "
            "the site's allow list names, deny the rest (the site policy the server sends)."
        ),
    )
    accept: list[GateKind] = Field(
        default_factory=lambda: [CredentialType.CCCD, CredentialType.PASS, CredentialType.RAW],
        min_length=1,
        description="Kinds of code the gate accepts.",
    )
    record_raw_text: bool = Field(
        False, description="Store the text of non-CCCD codes (personal data: off by default)."
    )

    @field_validator("accept")
    @classmethod
    def _each_kind_once(cls, kinds: list[CredentialType]) -> list[CredentialType]:
        seen: set[CredentialType] = set()
        for kind in kinds:
            if kind in seen:
                raise ValueError(f"'{kind.value}' is listed twice")
            seen.add(kind)
        return kinds


# --- indicator: GPIO pins -------------------------------------------------------------------------

BcmPin = Annotated[int, Field(ge=0, le=27, description="BCM GPIO number (0..27).")]
OUTPUT_PINS = ("green", "red", "buzzer", "relay")
DOOR_INPUT_PINS = ("fire_alarm_pin", "release_button_pin")


class DoorConfig(Section):
    """The door the relay drives: how its lock behaves without power, and the inputs that release
    it without a verdict (each pulled up inside the Pi, active when a contact closes it to ground;
    docs/operations.md: "The door")."""

    fail: Literal["secure", "safe"] = Field(
        "secure",
        description="secure: the lock holds with no power, the relay energises to release it; "
        "safe: the lock releases with no power, the relay is energised to hold it locked (and "
        "de-energised to release it; the door is released whenever the gate is not running).",
    )
    fire_alarm_pin: BcmPin | None = Field(
        None,
        description="Input from the fire panel's contact: while it is closed the door is held "
        "released, the light shows fire_alarm and the gate's status says fire_alarm.",
    )
    release_button_pin: BcmPin | None = Field(
        None,
        description="A guard's manual-release button: each press releases the door for "
        "relay_seconds.",
    )


class IndicatorConfig(Section):
    enabled: bool = Field(True, description="Drive the LEDs, buzzer and relay.")
    green: BcmPin = 17
    red: BcmPin = 27
    buzzer: BcmPin | None = 22
    relay: BcmPin | None = None
    active_high: bool = Field(True, description="True when a high pin turns the output on.")
    relay_seconds: float = Field(
        3.0, gt=0, le=60, description="Seconds a granted verdict (or the button) releases the door."
    )
    door: DoorConfig = Field(default_factory=DoorConfig)

    @model_validator(mode="after")
    def _each_pin_once(self) -> IndicatorConfig:
        first_user: dict[int, str] = {}
        named = [(name, getattr(self, name)) for name in OUTPUT_PINS]
        named += [(f"door.{name}", getattr(self.door, name)) for name in DOOR_INPUT_PINS]
        for name, pin in named:
            if pin is None:
                continue
            if pin in first_user:
                # ctx["field"] tells errors.py which key to blame (a model validator has no loc).
                raise PydanticCustomError(
                    "pin_reused",
                    "pin {pin} is used for both {field} and {other}",
                    {"pin": pin, "field": first_user[pin], "other": name},
                )
            first_user[pin] = name
        return self

    @model_validator(mode="after")
    def _a_door_needs_its_relay(self) -> IndicatorConfig:
        if self.relay is not None:
            return self
        door_keys = [key for key in ("fail", *DOOR_INPUT_PINS) if key in self.door.model_fields_set]
        if door_keys:
            raise PydanticCustomError(
                "door_without_relay",
                "{field} is set but there is no door relay: set indicator.relay (its BCM pin)",
                {"field": f"door.{door_keys[0]}"},
            )
        return self


# --- MQTT -----------------------------------------------------------------------------------------


class MqttConfig(Section):
    broker: str | None = Field(
        None,
        description="mqtt://host:port or mqtts://...; none: the broker comes from the gate's "
        "enrolment (setup mode until it has enrolled).",
    )
    username: str | None = Field(None, min_length=1, max_length=128, description="Broker user.")
    password_file: Path | None = Field(
        None, description="File holding the broker password (env and systemd credentials win)."
    )
    ca_file: Path | None = Field(
        None,
        description="The CA that signed the broker's certificate (mqtts:// only; gatescan site "
        "init's ca.crt): the broker is checked against it alone; none: the system's CA store.",
    )
    cert_file: Path | None = Field(
        None, description="A client certificate (PEM) for a broker that asks for one."
    )
    key_file: Path | None = Field(
        None, description="The client certificate's private key, unless it is in cert_file."
    )
    keepalive: int = Field(15, ge=2, le=600, description="MQTT keepalive in seconds.")
    resend_after: float = Field(
        10.0, ge=1, le=3600, description="Seconds before an unacknowledged event is sent again."
    )
    telemetry_interval: float = Field(
        30.0, ge=1, le=3600, description="Seconds between telemetry messages."
    )
    _password: str | None = PrivateAttr(default=None)

    @field_validator("broker")
    @classmethod
    def _is_broker_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parse_broker_url(url)
        except CredentialsInBrokerUrl as error:
            # The technician's fix names this file's keys, which the protocol knows nothing of.
            raise ValueError(
                f"{error.shown!r} holds a user name or password; set mqtt.username and put the "
                f"password in {PASSWORD_HOMES}"
            ) from None
        return url.strip()

    @model_validator(mode="after")
    def _tls_files_need_mqtts(self) -> MqttConfig:
        named = [key for key in ("ca_file", "cert_file", "key_file") if getattr(self, key)]
        if named and self.broker is None:
            raise PydanticCustomError(
                "tls_without_broker",
                '{field} is set but no broker is: set mqtt.broker = "mqtts://host:port"',
                {"field": named[0]},
            )
        if named and not parse_broker_url(self.broker or "").tls:
            raise PydanticCustomError(
                "tls_without_mqtts",
                "{field} is set but the broker is not mqtts:// (no TLS); write mqtts://host:port",
                {"field": named[0]},
            )
        if self.key_file is not None and self.cert_file is None:
            raise PydanticCustomError(
                "key_without_cert",
                "a key file needs its certificate: set mqtt.cert_file too",
                {"field": "key_file"},
            )
        return self

    @property
    def address(self) -> BrokerAddress:
        """The broker's address; ValueError when the config names none (setup mode)."""
        if self.broker is None:
            raise ValueError("no broker configured")
        return parse_broker_url(self.broker)

    @property
    def tls(self) -> BrokerTls:
        return BrokerTls(self.ca_file, self.cert_file, self.key_file)

    def password(self) -> str | None:
        """The broker password found at load time; else read from password_file; else None."""
        if self._password is not None:
            return self._password
        if self.password_file is not None:
            return read_secret(self.password_file)
        return None

    def with_password(self, password: str | None) -> MqttConfig:
        """A copy that answers `password()` with this secret (kept out of repr and dumps)."""
        copy = self.model_copy()
        copy._password = password
        return copy


def read_secret(path: Path) -> str:
    """A secret file's text without the line break editors add at the end."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


# --- journal: the gate's own record of entries ----------------------------------------------------


class JournalConfig(Section):
    """The local history under data_dir: how it is split into files and how long it is kept."""

    history_max_entries: int = Field(
        2000, ge=10, le=1_000_000, description="Entries per history file before a new one starts."
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="Days the local history is kept; older days are deleted."
    )


# --- the whole gate -------------------------------------------------------------------------------

_NOT_IN_DEVICE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def device_id_for_hostname(hostname: str) -> str:
    """'Lobby Pi #2' -> 'gate-Lobby-Pi-2'; a hostname that already starts with 'gate' is kept."""
    cleaned = _NOT_IN_DEVICE_ID.sub("-", hostname.split(".")[0]).strip("-._")
    if not cleaned:
        return "gate"
    device_id = cleaned if cleaned.lower().startswith("gate") else f"gate-{cleaned}"
    return device_id[:MAX_DEVICE_ID].rstrip("-._")


MACHINE_ID_FILE = Path("/etc/machine-id")
MACHINE_ID_DIGITS = 8


def device_id_for_machine(hostname: str, machine_id: str) -> str:
    """'raspberrypi' on machine 3f2a9c1b... -> 'gate-raspberrypi-3f2a9c1b'.

    Every stock Raspberry Pi OS image is called 'raspberrypi': a hostname alone would make every
    gate the same broker user and take over the others' sessions. /etc/machine-id is made anew
    on each machine's first boot, so its first digits tell two Pis apart; the hostname stays in
    front for people. Without a machine id (not systemd), the hostname alone.
    """
    digits = "".join(ch for ch in machine_id.strip().lower() if ch in "0123456789abcdef")
    suffix = f"-{digits[:MACHINE_ID_DIGITS]}" if len(digits) >= MACHINE_ID_DIGITS else ""
    base = device_id_for_hostname(hostname)[: MAX_DEVICE_ID - len(suffix)].rstrip("-._")
    return base + suffix


def read_machine_id(path: Path = MACHINE_ID_FILE) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def device_id_from_this_host() -> str:
    return device_id_for_machine(socket.gethostname(), read_machine_id())


class GateConfig(Section):
    """One gate: who it is, what it looks with, how it decides, shows and reports."""

    device_id: str = Field(
        default_factory=device_id_from_this_host,
        pattern=DEVICE_ID_PATTERN,
        description="Unique name of this gate; also its MQTT topic level and broker user. "
        "Default: 'gate-' + the hostname + '-' + the first 8 digits of /etc/machine-id; an "
        "enrolled gate is the device id its grant names.",
    )
    site_id: str = Field("", max_length=64, description="The site this gate belongs to.")
    direction: Direction = Field(Direction.IN, description="in: an entrance; out: an exit.")
    location: str = Field(
        "", max_length=200, description="Where the gate stands, for people (e.g. 'Cổng chính')."
    )
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the journal is kept.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    camera: CameraConfig = Field(default_factory=Picamera2Camera)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    indicator: IndicatorConfig = Field(default_factory=IndicatorConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)


CONFIG_HASH_DIGITS = 16


def config_hash(config: GateConfig) -> str:
    """The first 16 hex digits of the SHA-256 of the config as the gate runs it (every value,
    defaults included, as canonical JSON; the broker password is never part of it): two gates
    with the same hash run the same settings, and a hash that changed means the config did."""
    canonical = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:CONFIG_HASH_DIGITS]
