"""JSON messages of protocol v1. Readers ignore unknown fields; writers send every field.

What each text field may hold is decided in protocol/text.py and described in docs/protocol.md.
"""

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocol.text import (
    CODE_TEXT_MAX_CHARS,
    NAME_MAX_CHARS,
    PLAIN_TEXT_MAX_CHARS,
    code_text_problem,
    name_problem,
    plain_text_problem,
    printable,
)
from protocol.topics import DEVICE_ID_PATTERN, Topic
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus

# A single message above this is refused unread (a QR code holds at most 2,953 bytes).
MAX_MESSAGE_BYTES = 64 * 1024
EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,80}$"
BOOT_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
CCCD_NUMBER_PATTERN = r"^[0-9]{12}$"
# A self check-in's subject (issue 18): the CCCD number the person gave, or, without one, `tel-`
# and 20 hex digits of a keyed hash of their phone number (server/checkin/declaration.py).
SELF_SUBJECT_PATTERN = r"^(?:[0-9]{12}|tel-[0-9a-f]{20})$"
# code_length fits a 32-bit SQL integer; any code a camera can read is far below it.
MAX_CODE_LENGTH = 2**31 - 1


def _refusing(problem: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic check from one of protocol.text's rules (its message never quotes the value)."""

    def check(value: str) -> str:
        found = problem(value)
        if found is not None:
            raise ValueError(found)
        return value

    return AfterValidator(check)


DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
EventId = Annotated[str, StringConstraints(pattern=EVENT_ID_PATTERN)]
BootId = Annotated[str, StringConstraints(pattern=BOOT_ID_PATTERN)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PlainText = Annotated[
    str, StringConstraints(max_length=PLAIN_TEXT_MAX_CHARS), _refusing(plain_text_problem)
]
Label = Annotated[str, StringConstraints(max_length=64), _refusing(plain_text_problem)]
NameText = Annotated[str, StringConstraints(max_length=NAME_MAX_CHARS), _refusing(name_problem)]
CodeText = Annotated[
    str, StringConstraints(max_length=CODE_TEXT_MAX_CHARS), _refusing(code_text_problem)
]
_CCCD_NUMBER = re.compile(CCCD_NUMBER_PATTERN)
_PASS_ID = re.compile(r"[0-9a-f]{16}")
_SELF_SUBJECT = re.compile(SELF_SUBJECT_PATTERN)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class Event(_Message):
    """One showing of a code at a gate: what was read, when, and the verdict."""

    event_id: EventId
    device_id: DeviceId
    site_id: PlainText = ""
    # Strict: a number is a JSON number and a flag a JSON bool; "1" and "yes" are wrong types.
    seq: Annotated[int, Strict(), Field(ge=0, lt=2**63)]
    boot_id: BootId
    ts: AwareDatetime  # RFC 3339, UTC, from the device clock (see clock_synced)
    clock_synced: StrictBool
    direction: Direction
    status: VerdictStatus
    reason: Reason
    credential_type: CredentialType
    subject_id: Annotated[str, StringConstraints(max_length=64)]  # see _fits_its_credential
    subject_name: NameText = ""
    code_sha256: Hex64
    code_length: Annotated[int, Strict(), Field(ge=0, le=MAX_CODE_LENGTH)] = 0
    code_text: CodeText | None = None
    # The site keeps raw codes' text, but this code's text broke the code_text rule: left out.
    code_text_withheld: StrictBool = False

    @model_validator(mode="after")
    def _fits_its_credential(self) -> Self:
        problem = _credential_problem(self) or _verdict_problem(self.status, self.reason)
        if problem is not None:
            raise ValueError(problem)
        return self


def _credential_problem(event: Event) -> str | None:
    """The fields that depend on the credential type agree with it (no value is quoted)."""
    if event.credential_type is CredentialType.CCCD:
        if not _CCCD_NUMBER.match(event.subject_id):
            return "a cccd subject_id is the 12-digit card number"
        if event.code_text is not None:
            return "a cccd event carries no code_text (the card's fields are in subject_*)"
    elif event.credential_type is CredentialType.PASS:
        # Empty for a code that begins like a pass but is not one (`invalid`): no id to trust.
        if event.subject_id and not _PASS_ID.fullmatch(event.subject_id):
            return "a pass subject_id is its 16-hex-digit pass id (or empty)"
        if event.subject_name or event.code_text is not None:
            return "a pass event carries no subject_name or code_text (the registry has them)"
    elif event.credential_type is CredentialType.SELF:
        if not _SELF_SUBJECT.match(event.subject_id):
            return "a self subject_id is a 12-digit card number or tel- and 20 hex digits"
        if not event.subject_name:
            return "a self check-in names its person (subject_name)"
    else:
        if event.subject_id not in ("", event.code_sha256):
            return "a raw subject_id is the code_sha256 (or empty)"
        if event.subject_name:
            return "a raw event has no subject_name"
    if event.code_text_withheld and event.code_text is not None:
        return "code_text_withheld goes with code_text null"
    return None


def _verdict_problem(status: VerdictStatus, reason: Reason) -> str | None:
    # Only the contradiction is refused: log mode records a damaged card with reason `invalid`.
    if status is VerdictStatus.DENIED and reason is Reason.OK:
        return "a denied event gives its reason (not ok)"
    return None


# A rejection's reason: a collector's dead-letter reason ("schema", "device_mismatch"), or the
# gate's own "broker_refused:0x87" when the broker kept refusing an event.
RejectionReason = Annotated[str, StringConstraints(max_length=64), _refusing(plain_text_problem)]
REJECTION_DETAIL_MAX_CHARS = 300
RejectionDetail = Annotated[
    str,
    StringConstraints(max_length=REJECTION_DETAIL_MAX_CHARS),
    _refusing(lambda text: plain_text_problem(text, REJECTION_DETAIL_MAX_CHARS)),
]


class Rejection(_Message):
    """An event refused for good: resending it cannot help, so the gate sets it aside."""

    event_id: EventId
    reason: RejectionReason
    detail: RejectionDetail = ""  # which field and rule (never the refused value)


class Ack(_Message):
    """Collector -> device: `event_ids` are committed to the database; `rejected` were refused
    (and kept as dead letters), so the gate stops resending them. `rejected` came within v1: an
    older gate ignores it."""

    event_ids: Annotated[list[EventId], Field(max_length=10_000)]
    rejected: Annotated[list[Rejection], Field(max_length=10_000)] = Field(default_factory=list)


class Status(_Message):
    """Retained on .../status. `offline` is also the device's MQTT last will."""

    state: Literal["online", "offline"]
    ts: AwareDatetime | None = None
    version: Label = ""
    boot_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{0,64}$")] = ""
    faults: Annotated[list[Label], Field(max_length=16)] = Field(default_factory=list)
    # Where the gate stands, from its config (added within v1: an older gate leaves them out).
    site_id: PlainText = ""
    location: PlainText = ""
    direction: Direction | None = None
    # The site policy version (protocol/site_policy.py) the gate decides with; None: it holds
    # none yet (added within v1).
    policy_version: Annotated[int, Strict(), Field(ge=1, lt=2**63)] | None = None


INTERFACE_NAME_PATTERN = r"^[A-Za-z0-9_.:@-]{0,15}$"  # Linux: at most 15 characters


def _an_ip_address(value: str) -> str:
    """An IPv4 or IPv6 address, in its short form."""
    return str(ipaddress.ip_address(value))


class InterfaceAddress(_Message):
    """One of the gate's IP addresses and the network interface that holds it ("" unknown)."""

    interface: Annotated[str, StringConstraints(pattern=INTERFACE_NAME_PATTERN)] = ""
    address: Annotated[str, StringConstraints(max_length=45), AfterValidator(_an_ip_address)]


ConfigHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
KeyId = Annotated[int, Strict(), Field(ge=1, le=0xFFFF)]
PolicyVersion = Annotated[int, Strict(), Field(ge=1, lt=2**63)]


class UpdateResult(_Message):
    """The gate's updater's last result (device/update/: its result file), carried in the
    telemetry (added within v1): `outcome` is `updated`, `update_failed` (switched back),
    `update_refused` (unsigned, tampered, unreachable, ...) or `unchanged`; readers keep an
    outcome they do not know as it is."""

    outcome: Label
    version: Label
    from_version: Label | None = None
    reason: PlainText = ""
    at: AwareDatetime | None = None


class Telemetry(_Message):
    ts: AwareDatetime
    uptime_s: float
    fps: float
    decode_ms: float  # median decode time over the last interval
    outbox_depth: Annotated[int, Strict()]
    clock_synced: StrictBool
    version: Label
    faults: Annotated[list[Label], Field(max_length=16)] = Field(default_factory=list)
    # Events set aside in the journal's rejected table, all time (added within v1).
    rejected_total: Annotated[int, Strict(), Field(ge=0)] = 0
    # Camera frames never decoded because a newer one came first, over the interval (added
    # within v1): the decoder is slower than the camera.
    frames_dropped: Annotated[int, Strict(), Field(ge=0)] = 0
    # Releases of the door that no verdict granted, since the gate started (added within v1): by
    # the fire-alarm input, and by the guard's manual-release button.
    fire_alarm_releases: Annotated[int, Strict(), Field(ge=0)] = 0
    button_releases: Annotated[int, Strict(), Field(ge=0)] = 0
    # Releases by a manager's command from the dashboard (`Command`), since the gate started
    # (added within v1).
    dashboard_releases: Annotated[int, Strict(), Field(ge=0)] = 0
    # Decoded frames of the interval where a code was likely (read, or found and not read), and
    # those where one was read: the read rate (added within v1). None from a gate whose decoder
    # cannot tell, and from older gates.
    frames_with_code: Annotated[int, Strict(), Field(ge=0)] | None = None
    frames_read: Annotated[int, Strict(), Field(ge=0)] | None = None
    # The machine, for a technician (added within v1; each null from an older gate, and where
    # the gate cannot read it: no Wi-Fi, not a Raspberry Pi). docs/protocol.md, "Telemetry".
    addresses: Annotated[list[InterfaceAddress], Field(max_length=16)] | None = None
    wifi_signal_dbm: Annotated[int, Strict(), Field(ge=-150, le=0)] | None = None
    disk_free_bytes: Annotated[int, Strict(), Field(ge=0)] | None = None
    disk_total_bytes: Annotated[int, Strict(), Field(ge=0)] | None = None
    cpu_temp_c: Annotated[float, Field(ge=-60, le=200)] | None = None
    # The firmware's get_throttled bits by name: "under_voltage", "throttled", ... now, and
    # "..._occurred" since boot; [] none; null unknown.
    throttling: Annotated[list[Label], Field(max_length=16)] | None = None
    system_uptime_s: Annotated[float, Field(ge=0)] | None = None
    # The first 16 hex digits of the SHA-256 of the gate's effective config (secrets left out).
    config_hash: ConfigHash | None = None
    # The site policy held: its version, its keys' ids, and for each list the policy version it
    # last changed in (the newest bucket held).
    policy_version: PolicyVersion | None = None
    policy_key_ids: Annotated[list[KeyId], Field(max_length=64)] | None = None
    list_versions: Annotated[dict[Label, PolicyVersion], Field(max_length=8)] | None = None
    # The updater's last result (added within v1): null from an older gate, and from one whose
    # updater has not run yet.
    update_result: UpdateResult | None = None

    @model_validator(mode="after")
    def _read_among_likely(self) -> Self:
        if (self.frames_with_code is None) != (self.frames_read is None):
            raise ValueError("frames_with_code and frames_read come together or not at all")
        if self.frames_read is not None and self.frames_read > (self.frames_with_code or 0):
            raise ValueError("frames_read cannot exceed frames_with_code")
        return self


COMMAND_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
# A gate carries out a command only within this many seconds of its `issued_at`, by its own
# clock, either way: a command the broker held while the gate was offline, or one replayed
# later, never opens the door (docs/protocol.md, "Commands").
COMMAND_MAX_AGE_S = 30.0


CommandId = Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
# What a person may ask a gate to do (docs/protocol.md, "Commands"). `release_door` came first;
# the others were added within v1: a gate older than them refuses them as malformed.
CommandAction = Literal[
    "release_door",
    "identify",
    "selftest_gpio",
    "reload_config",
    "restart",
    "send_logs",
    "push_config",
    "update",
]
COMMAND_ACTIONS: tuple[str, ...] = get_args(CommandAction)
ArgName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ArgValue = StrictBool | Annotated[int, Strict(), Field(ge=0, le=3600)] | Label
# push_config's settings: a key of the gate's config as section.key ("policy.mode") or a
# top-level key ("direction"), and a value the gate's own config model then checks.
SETTING_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31})?$"
MAX_SETTINGS = 24
SettingKey = Annotated[str, StringConstraints(pattern=SETTING_KEY_PATTERN)]
SettingScalar = (
    StrictBool
    | Annotated[int, Strict()]
    | Annotated[float, Strict(), Field(allow_inf_nan=False)]
    | Label
)
SettingValue = SettingScalar | Annotated[list[SettingScalar], Field(max_length=8)]
SOURCE_MAX_CHARS = 512
SourceText = Annotated[
    str,
    StringConstraints(max_length=SOURCE_MAX_CHARS),
    _refusing(lambda text: plain_text_problem(text, SOURCE_MAX_CHARS)),
]


class Command(_Message):
    """Collector -> device, QoS 1, never retained: something a person asked the gate to do now.
    The gate refuses one older (or further in the future) than COMMAND_MAX_AGE_S by its clock,
    and one whose command_id it has seen."""

    command_id: CommandId
    action: CommandAction
    issued_at: AwareDatetime
    by: Label  # who asked (the dashboard user's name), for the gate's log
    # Added within v1: an action's options, e.g. {"include_relay": true} for selftest_gpio.
    args: Annotated[dict[ArgName, ArgValue], Field(max_length=8)] = Field(default_factory=dict)
    # Added within v1: push_config's settings, the whole push (it replaces the previous one;
    # {} takes every pushed setting back, so the file's values hold again).
    settings: Annotated[dict[SettingKey, SettingValue], Field(max_length=MAX_SETTINGS)] = Field(
        default_factory=dict
    )
    # Added within v1: update's bundle, an https URL the gate's updater fetches (or null).
    source: SourceText | None = None


AnswerStatus = Literal["accepted", "done", "refused", "failed"]
LogLevel = Literal["WARNING", "ERROR", "CRITICAL"]
LOG_LINE_MAX_CHARS = 300
MAX_LOG_LINES = 50
LogText = Annotated[
    str,
    StringConstraints(max_length=LOG_LINE_MAX_CHARS),
    _refusing(lambda text: plain_text_problem(text, LOG_LINE_MAX_CHARS)),
]


class LogLine(_Message):
    """One warning or error of a gate's log, redacted at the gate (no ID numbers, no names)."""

    ts: AwareDatetime
    level: LogLevel
    logger: Label
    message: LogText


class CommandAnswer(_Message):
    """Device -> collector on its `answer` topic, QoS 1 (added within v1): what became of a
    command. `accepted` (started; `done` or `failed` follows), `done`, `refused` (malformed,
    stale, seen, unknown or not possible here), `failed`. `lines`: send_logs' answer only."""

    command_id: CommandId
    device_id: DeviceId
    action: Label  # as the command named it; "" when it could not be read
    status: AnswerStatus
    detail: PlainText = ""
    ts: AwareDatetime
    lines: Annotated[list[LogLine], Field(max_length=MAX_LOG_LINES)] = Field(default_factory=list)


class GateLogs(_Message):
    """Device -> collector on its `logs` topic, QoS 0 (added within v1): the gate's warnings
    and errors since its last such message, rate-limited at the gate; `suppressed`: lines the
    limit held back since the last message."""

    device_id: DeviceId
    lines: Annotated[list[LogLine], Field(max_length=MAX_LOG_LINES)]
    suppressed: Annotated[int, Strict(), Field(ge=0, lt=2**31)] = 0


_MODELS: dict[Topic, type[_Message]] = {
    Topic.EVENTS: Event,
    Topic.ACK: Ack,
    Topic.STATUS: Status,
    Topic.TELEMETRY: Telemetry,
    Topic.COMMAND: Command,
    Topic.ANSWER: CommandAnswer,
    Topic.LOGS: GateLogs,
}


class MessageError(ValueError):
    """A payload that is not a valid message for its topic; `reason` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_message(kind: Topic, payload: bytes) -> Any:
    """Parse and validate a payload for a topic kind, or raise MessageError."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError("too_large", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError("not_json", printable(str(exc), 200)) from None
    if not isinstance(data, dict):
        raise MessageError("not_object", f"expected a JSON object, got {type(data).__name__}")
    try:
        return _MODELS[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise MessageError("schema", printable(f"{where}: {first['msg']}", 300)) from None


_EVENT_ID = re.compile(EVENT_ID_PATTERN)
# A gate writes event_id first (the order of Event's fields), so even a payload too large to
# parse names its event at its start.
_LEADING_EVENT_ID = re.compile(rb'\A\s*\{\s*"event_id"\s*:\s*"([A-Za-z0-9_.:-]{8,80})"')


def event_id_of(payload: bytes) -> str | None:
    """The event_id an events payload names, if it names a well-formed one; the rest of the
    payload may be anything. How the collector tells a gate which event it refused."""
    if len(payload) > MAX_MESSAGE_BYTES:  # not parsed, as parse_message does not parse it
        leading = _LEADING_EVENT_ID.match(payload)
        return leading.group(1).decode("ascii") if leading else None
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    if isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id):
        return event_id
    return None


def ack_payload(event_ids: Sequence[str], rejected: Sequence[Rejection] = ()) -> bytes:
    """`Ack(event_ids=..., rejected=...).to_json()`, byte for byte, without building the model
    (which costs more than the rest of an ack: the collector sends about one per event when a
    site has many gates). Ids of the protocol's shape need no escaping in JSON, so an ack of
    such ids alone is written directly; anything else goes through the model. Like
    `model_construct`, it does not validate: the collector acks only what it validated."""
    if not rejected and all(_EVENT_ID.fullmatch(event_id) for event_id in event_ids):
        if not event_ids:
            return b'{"event_ids":[],"rejected":[]}'
        return b'{"event_ids":["%s"],"rejected":[]}' % '","'.join(event_ids).encode("ascii")
    ack = Ack.model_construct(event_ids=list(event_ids), rejected=list(rejected))
    return ack.to_json()
