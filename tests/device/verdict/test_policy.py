"""Verdicts with the site policy the gate holds: every reason in access and log mode, and the
closed set of reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.site_policy.held import EMPTY_POLICY, HeldPolicy
from device.verdict.credentials import parse_credential
from device.verdict.policy import NOTHING_TRUSTED, Policy, PolicyMode, Verdict, access_problem
from device.verdict.presence import Presence
from gatescan.testing.site_policies import SampleSite, pass_id_of
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus

CARD = "001090012345|Trần Văn Đức|01011990|Nam|Hà Nội|15082021".encode()
ALLOWED_CARD = "079193012345|Nguyễn Thị Thu Uyên|05061993|Nữ|Huế|21042021".encode()
BLOCKED_CARD = "038190000123|Lê Thị Uyên|01011990|Nữ|Huế|15082021".encode()
BROKEN_CARD = "001099012345|Trần Văn Đức|32011990|Nam|Hà Nội|15082021".encode()
NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)

GRANTED = Verdict(VerdictStatus.GRANTED, Reason.OK)
RECORDED = Verdict(VerdictStatus.RECORDED, Reason.OK)


class Site:
    def __init__(self) -> None:
        self.sample = SampleSite("Bến xe Mỹ Đình")
        self.revoked = self.sample.issue(now=NOW)
        self.blocked = self.sample.issue(now=NOW)
        self.visitor_allowed = self.sample.issue(now=NOW, issued=False)
        self.sample.allow(ALLOWED_CARD[:12].decode(), pass_id_of(self.visitor_allowed))
        self.sample.block(BLOCKED_CARD[:12].decode(), pass_id_of(self.blocked))
        self.sample.revoke(pass_id_of(self.revoked))
        self.held = self.sample.held()

    def policy(self, mode: PolicyMode, held: HeldPolicy | None = None) -> Policy:
        snapshot = self.held if held is None else held
        return Policy(mode, held=lambda: snapshot, now=lambda: NOW)


SITE = Site()


def cases() -> list[tuple[str, bytes, Verdict, Verdict]]:
    """(what, code, access mode's verdict, log mode's verdict)."""
    sample = SITE.sample
    hour = timedelta(hours=1)
    valid = sample.issue(now=NOW)
    tampered = bytearray(valid)
    tampered[-1] ^= 1
    foreign = sample.issue(now=NOW, key=Ed25519PrivateKey.generate())
    unknown_key = sample.issue(now=NOW, key_id=sample.key_id + 1)
    expired = sample.issue(valid_from=NOW - 3 * hour, valid_until=NOW - hour)
    early = sample.issue(valid_from=NOW + hour, valid_until=NOW + 2 * hour)
    visitor = sample.issue(now=NOW, issued=False)
    denied, recorded = Verdict.denied, (lambda reason: Verdict(VerdictStatus.RECORDED, reason))

    def failed(reason: Reason) -> tuple[Verdict, Verdict]:
        return denied(reason), recorded(reason)

    self_declared = (denied(Reason.NOT_ALLOWED), RECORDED)
    return [
        ("a valid issued pass", valid, GRANTED, RECORDED),
        ("a tampered pass", bytes(tampered), *failed(Reason.BAD_SIGNATURE)),
        ("another site's pass", foreign, *failed(Reason.BAD_SIGNATURE)),
        ("a key the gate does not know", unknown_key, *failed(Reason.BAD_SIGNATURE)),
        ("an expired pass", expired, *failed(Reason.EXPIRED)),
        ("a pass not yet valid", early, *failed(Reason.NOT_YET_VALID)),
        ("a revoked pass", SITE.revoked, denied(Reason.REVOKED), denied(Reason.REVOKED)),
        ("a blocked pass", SITE.blocked, denied(Reason.BLOCKED), denied(Reason.BLOCKED)),
        ("a self check-in pass", visitor, denied(Reason.NOT_ALLOWED), RECORDED),
        # Issue 18: access mode never grants a self-declared pass, even one the allow list names.
        ("a self check-in pass on the allow list", SITE.visitor_allowed, *self_declared),
        ("a malformed pass", valid[:-1], *failed(Reason.INVALID)),
        ("an allow-listed card", ALLOWED_CARD, GRANTED, RECORDED),
        ("an unlisted card", CARD, denied(Reason.NOT_ALLOWED), RECORDED),
        ("a blocked card", BLOCKED_CARD, denied(Reason.BLOCKED), denied(Reason.BLOCKED)),
        ("a damaged card", BROKEN_CARD, *failed(Reason.INVALID)),
        ("a menu URL", b"https://example.vn/menu", denied(Reason.UNKNOWN_FORMAT), RECORDED),
        ("binary bytes", b"\xff\x00", denied(Reason.UNKNOWN_FORMAT), RECORDED),
    ]  # fmt: skip


# Named by `what` alone: the codes are random, and pytest-xdist's workers must collect the
# same test ids.
@pytest.mark.parametrize(
    ("what", "code", "access", "log"), [pytest.param(*case, id=case[0]) for case in cases()]
)
def test_every_reason_in_both_modes(what: str, code: bytes, access: Verdict, log: Verdict) -> None:
    parsed = parse_credential(code)
    assert SITE.policy("access").decide(parsed) == access, what
    assert SITE.policy("log").decide(parsed) == log, what


def test_a_pass_is_its_own_credential_type_with_its_pass_id() -> None:
    code = SITE.sample.issue(now=NOW)
    parsed = parse_credential(code)
    assert parsed.credential_type is CredentialType.PASS
    assert parsed.subject_id == pass_id_of(code)
    broken = parse_credential(code[:-1])
    assert broken.credential_type is CredentialType.PASS and broken.subject_id == ""


def test_access_mode_without_a_policy_refuses_every_code_and_says_why() -> None:
    policy = SITE.policy("access", EMPTY_POLICY)
    for code in (SITE.sample.issue(now=NOW), ALLOWED_CARD, CARD, b"hello"):
        assert policy.decide(parse_credential(code)).status is VerdictStatus.DENIED
    problem = access_problem("access", EMPTY_POLICY)
    assert problem is not None and problem.startswith(NOTHING_TRUSTED)
    assert access_problem("log", EMPTY_POLICY) is None
    assert access_problem("access", SITE.held) is None


def test_a_site_with_no_key_but_an_allow_list_can_grant() -> None:
    sample = SampleSite("Bến xe Mỹ Đình", with_key=False)
    assert access_problem("access", sample.held()) is not None
    sample.allow(ALLOWED_CARD[:12].decode())
    held = sample.held()
    assert access_problem("access", held) is None
    assert SITE.policy("access", held).decide(parse_credential(ALLOWED_CARD)) == GRANTED


def test_a_gate_whose_clock_is_a_little_off_still_grants_a_pass() -> None:
    code = SITE.sample.issue(
        valid_from=NOW + timedelta(minutes=1), valid_until=NOW + timedelta(hours=1)
    )
    assert SITE.policy("access").decide(parse_credential(code)) == GRANTED


def test_damaged_card_is_denied_in_log_mode_where_cards_are_not_taken() -> None:
    verdict = Policy("log", accept=[CredentialType.RAW]).decide(parse_credential(BROKEN_CARD))
    assert verdict == Verdict(VerdictStatus.DENIED, Reason.INVALID)


def test_site_that_takes_only_cards_denies_other_codes_as_unknown_format() -> None:
    policy = Policy("log", accept=[CredentialType.CCCD])
    assert policy.decide(parse_credential(b"hello")) == Verdict.denied(Reason.UNKNOWN_FORMAT)
    assert policy.decide(parse_credential(CARD)).status is VerdictStatus.RECORDED


def test_site_that_refuses_cards_denies_them_as_not_allowed() -> None:
    policy = Policy("log", accept=[CredentialType.RAW])
    assert policy.decide(parse_credential(CARD)) == Verdict.denied(Reason.NOT_ALLOWED)


# --- phones' rotating passes ----------------------------------------------------------------


def test_a_phones_rotating_pass_is_granted_and_its_screenshot_refused_after_a_minute() -> None:
    site = SampleSite("Bệnh viện Chợ Rẫy")
    phone_pass = site.issue(now=NOW, phone=True)
    held = site.held()

    def decide(code: bytes, at: datetime, mode: PolicyMode = "access") -> Verdict:
        return Policy(mode, held=lambda: held, now=lambda: at).decide(parse_credential(code))

    shown = site.on_phone(phone_pass, NOW)
    assert decide(shown, NOW) == GRANTED
    assert decide(shown, NOW + timedelta(seconds=25)) == GRANTED
    assert decide(shown, NOW + timedelta(minutes=2)) == Verdict.denied(Reason.EXPIRED)
    assert decide(site.on_phone(phone_pass, NOW + timedelta(minutes=5)), NOW) == Verdict.denied(
        Reason.NOT_YET_VALID
    )
    # The static part alone, copied off the screen: a PHONE pass needs its code.
    assert decide(phone_pass, NOW) == Verdict.denied(Reason.BAD_SIGNATURE)
    # A code made with another site's secret, or a forged step.
    other = SampleSite("khác")
    assert decide(other.on_phone(phone_pass, NOW), NOW) == Verdict.denied(Reason.BAD_SIGNATURE)
    forged = bytearray(shown)
    forged[87] ^= 1
    assert decide(bytes(forged), NOW) == Verdict.denied(Reason.BAD_SIGNATURE)
    # Log mode records the screenshot with its reason and stops nobody.
    late = NOW + timedelta(minutes=2)
    assert decide(shown, late, "log") == Verdict(VerdictStatus.RECORDED, Reason.EXPIRED)
    # A printed (non-phone) pass shown with a rotating code is checked the same way.
    printed = site.issue(now=NOW)
    assert decide(site.on_phone(printed, NOW), NOW) == GRANTED
    assert decide(printed, NOW) == GRANTED


# --- presence: anti-passback and capacity ---------------------------------------------------


def _presence_site(anti_passback: str, capacity: int | None = None) -> tuple[SampleSite, bytes]:
    site = SampleSite("Nhà máy Bình Dương", anti_passback=anti_passback, capacity=capacity)
    site.allow(ALLOWED_CARD[:12].decode())
    return site, ALLOWED_CARD


def _gate(site: SampleSite, direction: Direction, presence: Presence) -> Policy:
    held = site.held()
    return Policy(
        "access", held=lambda: held, now=lambda: NOW, presence=presence, direction=direction
    )


def test_hard_anti_passback_refuses_a_second_entry_until_the_person_goes_out() -> None:
    site, card = _presence_site("hard")
    presence = Presence()
    entrance, exit_ = _gate(site, Direction.IN, presence), _gate(site, Direction.OUT, presence)
    entry = site.held().entry("cccd:" + card[:12].decode())
    assert entry is not None
    assert entrance.decide(parse_credential(card)) == GRANTED
    presence.record(1, entry, Direction.IN, NOW)
    assert entrance.decide(parse_credential(card)) == Verdict.denied(Reason.ALREADY_INSIDE)
    assert exit_.decide(parse_credential(card)) == GRANTED  # never trapped inside
    presence.record(2, entry, Direction.OUT, NOW)
    assert entrance.decide(parse_credential(card)) == GRANTED


def test_soft_anti_passback_lets_them_in_and_says_so() -> None:
    site, card = _presence_site("soft")
    presence = Presence()
    entry = site.held().entry("cccd:" + card[:12].decode())
    assert entry is not None
    presence.record(1, entry, Direction.IN, NOW)
    verdict = _gate(site, Direction.IN, presence).decide(parse_credential(card))
    assert verdict == Verdict(VerdictStatus.GRANTED, Reason.ALREADY_INSIDE)


def test_a_full_site_refuses_newcomers_but_not_people_already_inside_or_leaving() -> None:
    site, card = _presence_site("off", capacity=1)
    other = "038190000124|Phạm Thị Bình|01011990|Nữ|Huế|15082021".encode()
    site.allow(other[:12].decode())
    presence = Presence()
    entrance = _gate(site, Direction.IN, presence)
    entry = site.held().entry("cccd:" + card[:12].decode())
    assert entry is not None
    presence.record(1, entry, Direction.IN, NOW)
    assert entrance.decide(parse_credential(other)) == Verdict.denied(Reason.SITE_FULL)
    assert entrance.decide(parse_credential(card)) == GRANTED  # already inside: no one more
    assert _gate(site, Direction.OUT, presence).decide(parse_credential(other)) == GRANTED
