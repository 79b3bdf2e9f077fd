"""Closed sets shared by the gate, the wire, the store and the dashboard."""

from enum import StrEnum


class VerdictStatus(StrEnum):
    """What the gate decided about one showing of a code."""

    GRANTED = "granted"  # access mode: the person may pass
    RECORDED = "recorded"  # log-only mode: the entry is written down, nobody is stopped
    DENIED = "denied"


class Reason(StrEnum):
    """Why. `ok` goes with granted; denied always has another reason. `recorded` (log mode) has
    `ok`, or the reason a readable code failed its format's checks (a damaged card is still
    written down in log mode: nobody is stopped)."""

    OK = "ok"
    UNKNOWN_FORMAT = "unknown_format"
    INVALID = "invalid"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    BLOCKED = "blocked"
    NOT_ALLOWED = "not_allowed"
    ALREADY_INSIDE = "already_inside"
    SITE_FULL = "site_full"  # added within v1 (issue 15): the site's capacity is reached
    ERROR = "error"


class CredentialType(StrEnum):
    CCCD = "cccd"  # Vietnamese chip citizen ID card
    PASS = "pass"  # a site's signed pass (protocol/passes.py): subject_id is its 16-hex pass id
    RAW = "raw"  # any other code: kept as a digest
    # Self-declared (issue 18): a person checked in with their own phone at a location's poster
    # (server/checkin/). Never a gate's: no gate reads it, accepts it or sends it.
    SELF = "self"


# What a gate reads and may accept (firmware_config's `policy.accept`, the dashboard's settings
# form): every credential type but a self check-in's.
GATE_CREDENTIAL_TYPES: tuple[CredentialType, ...] = (
    CredentialType.CCCD,
    CredentialType.PASS,
    CredentialType.RAW,
)


class Direction(StrEnum):
    IN = "in"
    OUT = "out"
