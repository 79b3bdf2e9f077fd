"""Credential -> Verdict(status, reason), from the closed sets in protocol.verdicts, with the site
policy the gate holds (device/site_policy/: the site's pass keys and its allow, block and revoked
lists).

Mode `access`: the gate grants only what it can trust, and says why it refuses the rest.

    pass   bad signature or unknown key -> bad_signature; window -> not_yet_valid / expired;
           revoked list -> revoked; block list -> blocked; not ISSUED (self-declared at a
           check-in poster: who it names was typed, not checked) -> not_allowed, whatever the
           allow list says (issue 18); else granted
           a phone's pass (with its rotating code, protocol/rotating_passes.py): the code of a
           step more than a minute old -> expired, of a future step -> not_yet_valid, not the
           pass's -> bad_signature; a PHONE pass without its code -> bad_signature
    cccd   block list -> blocked; allow list -> granted; else not_allowed
    at an entrance, someone the lists let in (device/verdict/presence.py, the site's rules):
           inside already and anti-passback hard -> already_inside; soft -> granted with the
           reason already_inside (recorded, the door opens); not inside and the site at its
           capacity -> site_full. Exits are never refused.
    raw    unknown_format
    a pass or card that breaks its format -> invalid

Mode `log` (the default, the 2021 rule's use): nobody is stopped, but problems are kept. A pass
or card failing its checks is `recorded` with that reason (invalid, bad_signature, expired,
not_yet_valid); a blocked card or a blocked or revoked pass is `denied` (blocked, revoked): the
site said so in every mode. Everything else is recorded `ok`, raw codes included.

A gate in access mode with no site key and no allow list (or no policy yet) refuses every code:
that is the policy's own answer here, and the gate shows it as the `policy` fault
(device/app.py), so a missing policy is a closed door that says why, never an open one.

Speed: `decide` runs between the decode and the light. It reads the held snapshot once (no
lock), computes the pass's or card's list entry once (one HMAC), and verifies a pass's Ed25519
signature (about 50 us); bench/site_lists_lookup.py measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from device.site_policy.held import EMPTY_POLICY, HeldPolicy
from device.verdict.credentials import Credential, ParseResult, RefusedCode
from device.verdict.presence import Presence
from protocol.passes import PassFlags, SignedPass, verify_pass
from protocol.rotating_passes import RotatingTail, pass_secret, verify_rotation
from protocol.verdicts import (
    GATE_CREDENTIAL_TYPES,
    CredentialType,
    Direction,
    Reason,
    VerdictStatus,
)

PolicyMode = Literal["log", "access"]


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reason: Reason

    @classmethod
    def denied(cls, reason: Reason) -> Verdict:
        return cls(VerdictStatus.DENIED, reason)


NOTHING_TRUSTED = "access mode with no site key and no allow list: every code is refused"


def access_problem(mode: PolicyMode, held: HeldPolicy) -> str | None:
    """Why a gate in this mode, with this policy, opens for nobody (the `policy` fault); None
    when it can grant someone, or stops nobody (log mode)."""
    if mode != "access" or held.trusts_anything:
        return None
    if held.manifest is None:
        return NOTHING_TRUSTED + " (no site policy received from the server yet)"
    return NOTHING_TRUSTED + f" (site policy version {held.manifest.version})"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _no_policy() -> HeldPolicy:
    return EMPTY_POLICY


class Policy:
    """`held` gives the site policy to decide with (read once per decision); `now` the time a
    pass's window is checked against (timezone-aware)."""

    def __init__(
        self,
        mode: PolicyMode = "log",
        accept: Iterable[CredentialType] = GATE_CREDENTIAL_TYPES,
        *,
        held: Callable[[], HeldPolicy] = _no_policy,
        now: Callable[[], datetime] = _utc_now,
        presence: Presence | None = None,
        direction: Direction = Direction.IN,
    ) -> None:
        self.mode = mode
        self.presence = presence or Presence()
        self._entrance = direction is Direction.IN
        self.accept = frozenset(accept)
        self.held = held
        self.now = now
        self._access = mode == "access"
        self._admit = Verdict(
            VerdictStatus.GRANTED if self._access else VerdictStatus.RECORDED, Reason.OK
        )
        # Every verdict made once here: deciding runs before the light, and a verdict is a value.
        self._recorded = {reason: Verdict(VerdictStatus.RECORDED, reason) for reason in Reason}
        self._denied = {reason: Verdict.denied(reason) for reason in Reason}
        # A check failed: access mode refuses; log mode records the reason and stops nobody.
        self._failed = self._denied if self._access else self._recorded
        self._warned = Verdict(VerdictStatus.GRANTED, Reason.ALREADY_INSIDE)  # soft anti-passback

    def decide(self, parsed: ParseResult) -> Verdict:
        if isinstance(parsed, RefusedCode):
            if not self._access and parsed.credential_type in self.accept:
                return self._recorded[parsed.reason]
            return self._denied[parsed.reason]
        kind = parsed.credential_type
        if kind not in self.accept:
            # No format the site takes: "unknown"; a known type the site refuses: "not allowed".
            unknown = kind is CredentialType.RAW
            return self._denied[Reason.UNKNOWN_FORMAT if unknown else Reason.NOT_ALLOWED]
        if kind is CredentialType.PASS:
            assert parsed.signed_pass is not None
            return self._pass(parsed.signed_pass, parsed.rotation)
        if kind is CredentialType.CCCD:
            return self._card(parsed)
        return self._denied[Reason.UNKNOWN_FORMAT] if self._access else self._admit

    def _pass(self, signed: SignedPass, rotation: RotatingTail | None) -> Verdict:
        held = self.held()
        now = self.now()
        reason = verify_pass(signed, held.keys, now)
        if reason is Reason.OK:
            reason = self._rotation(signed, rotation, held, now)
        if reason is not Reason.OK:
            return self._failed[reason]
        entry = held.entry("pass:" + signed.body.pass_id_text())
        if held.holds("revoked", entry):
            return self._denied[Reason.REVOKED]
        if held.holds("block", entry):
            return self._denied[Reason.BLOCKED]
        if self._access and not signed.body.issued:  # self-declared: never, allow list or not
            return self._denied[Reason.NOT_ALLOWED]
        return self._admitted(held, entry)

    def _card(self, card: Credential) -> Verdict:
        held = self.held()
        entry = held.entry("cccd:" + card.subject_id)
        if held.holds("block", entry):
            return self._denied[Reason.BLOCKED]
        if self._access and not held.holds("allow", entry):
            return self._denied[Reason.NOT_ALLOWED]
        return self._admitted(held, entry)

    @staticmethod
    def _rotation(
        signed: SignedPass, rotation: RotatingTail | None, held: HeldPolicy, now: datetime
    ) -> Reason:
        """A phone's pass: its rotating code (a screenshot's is too old). A pass marked PHONE
        without one is a copy of the screen's static part: refused as not signed for this."""
        if rotation is None:
            return Reason.BAD_SIGNATURE if signed.body.flags & PassFlags.PHONE else Reason.OK
        site_secret = held.rotation_secret
        if site_secret is None:
            return Reason.BAD_SIGNATURE
        return verify_rotation(rotation, pass_secret(site_secret, signed.body.pass_id), now)

    def _admitted(self, held: HeldPolicy, entry: bytes | None) -> Verdict:
        """Someone the lists let in, at an entrance in access mode: presence has its say
        (anti-passback, capacity; device/verdict/presence.py). Exits are never refused."""
        rules = held.manifest
        if not self._access or not self._entrance or entry is None or rules is None:
            return self._admit
        if rules.anti_passback == "off" and rules.capacity is None:
            return self._admit
        inside = self.presence.is_inside(entry)
        if inside and rules.anti_passback == "hard":
            return self._denied[Reason.ALREADY_INSIDE]
        if not inside and rules.capacity is not None and self.presence.count() >= rules.capacity:
            return self._denied[Reason.SITE_FULL]
        if inside and rules.anti_passback == "soft":
            return self._warned
        return self._admit
