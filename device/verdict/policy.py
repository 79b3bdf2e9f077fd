"""Credential -> Verdict(status, reason), from the closed sets in protocol.verdicts.

Mode `log` (the default, the 2021 rule's use): every readable code of a type the site takes is
`recorded` and nobody is stopped. A card that fails its format's checks is still recorded, with the
reason (`invalid`) kept, so the manager sees it and the person is not turned away by a log.

Mode `access`: acceptable codes are `granted` and the door relay opens; lists of who may pass
(allow, block, revoke) plug in here later without reshaping the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from device.verdict.credentials import ParseResult, RefusedCode
from protocol.verdicts import CredentialType, Reason, VerdictStatus

PolicyMode = Literal["log", "access"]


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reason: Reason

    @classmethod
    def denied(cls, reason: Reason) -> Verdict:
        return cls(VerdictStatus.DENIED, reason)


class Policy:
    def __init__(
        self, mode: PolicyMode = "log", accept: Iterable[CredentialType] = tuple(CredentialType)
    ) -> None:
        self.mode = mode
        self.accept = frozenset(accept)
        self._admit = Verdict(
            VerdictStatus.GRANTED if mode == "access" else VerdictStatus.RECORDED, Reason.OK
        )
        # Every verdict made once here: deciding runs before the light, and a verdict is a value.
        self._recorded = {reason: Verdict(VerdictStatus.RECORDED, reason) for reason in Reason}
        self._denied = {reason: Verdict.denied(reason) for reason in Reason}

    def decide(self, parsed: ParseResult) -> Verdict:
        if isinstance(parsed, RefusedCode):
            if self.mode == "log" and parsed.credential_type in self.accept:
                return self._recorded[parsed.reason]
            return self._denied[parsed.reason]
        if parsed.credential_type not in self.accept:
            # No format the site takes: "unknown"; a known type the site refuses: "not allowed".
            unknown = parsed.credential_type is CredentialType.RAW
            return self._denied[Reason.UNKNOWN_FORMAT if unknown else Reason.NOT_ALLOWED]
        return self._admit
