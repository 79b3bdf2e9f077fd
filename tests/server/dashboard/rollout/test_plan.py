"""A rollout's plan and the judgement of a gate that was sent the update (plan.py, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.dashboard.rollout.plan import (
    CANARY,
    DONE,
    FAILED,
    NO_ANSWER,
    REST,
    UPDATED,
    WAITING,
    GateNow,
    RolloutOptions,
    SentGate,
    is_older,
    judge,
    plan,
)

SENT_AT = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
GATES = [
    GateNow("gate-b", "hq", "0.2.0", online=True),
    GateNow("gate-a", "hq", "0.2.0", online=False),
    GateNow("gate-c", "hq", "0.3.0", online=True),
    GateNow("gate-d", "hq", "0.4.0rc1", online=True),
    GateNow("gate-e", "annex", "", online=True),
]


def results(options: RolloutOptions, selected: frozenset[str] | None = None) -> dict[str, str]:
    return {g.device_id: f"{g.result}:{g.detail}" for g in plan(GATES, selected, options).gates}


def test_only_outdated_and_skip_offline_leave_out_the_gates_they_name() -> None:
    assert results(RolloutOptions("0.3.0", canary=False)) == {
        "gate-a": "skipped:offline",
        "gate-b": "waiting:",
        "gate-c": "skipped:already at 0.3.0",
        "gate-d": "skipped:newer than 0.3.0",
        "gate-e": "waiting:",  # no version reported: older for the plan, the updater decides
    }


def test_without_those_options_an_offline_or_newer_gate_is_sent_but_never_one_at_target() -> None:
    options = RolloutOptions("0.3.0", only_outdated=False, skip_offline=False, canary=False)
    assert results(options) == {
        "gate-a": "waiting:",
        "gate-b": "waiting:",
        "gate-c": "skipped:already at 0.3.0",
        "gate-d": "waiting:",
        "gate-e": "waiting:",
    }


def test_gates_not_selected_are_skipped_as_such() -> None:
    options = RolloutOptions("0.3.0", canary=False)
    found = results(options, frozenset({"gate-b"}))
    assert found["gate-b"] == "waiting:"
    assert {found[g] for g in ("gate-a", "gate-c", "gate-d", "gate-e")} == {"skipped:not selected"}


def test_the_canary_is_the_first_online_gate_to_send_and_the_rest_wait() -> None:
    options = RolloutOptions("0.3.0", skip_offline=False)
    planned = plan(GATES, None, options)
    # By site then id: annex's gate-e first (online), then hq's gate-a (offline), gate-b.
    assert planned.canary == "gate-e" and planned.phase == CANARY
    offline_first = plan(GATES[:2], None, options)
    assert offline_first.canary == "gate-b"  # gate-a is first by id but offline
    # One gate to send is its own canary: no waiting behind it.
    alone = plan(GATES, frozenset({"gate-b"}), options)
    assert alone.canary is None and alone.phase == REST
    nothing = plan(GATES, frozenset({"gate-c"}), options)
    assert nothing.phase == DONE and [g.result for g in nothing.gates].count(WAITING) == 0


def test_the_version_order_is_the_release_bundles() -> None:
    assert is_older("0.2.0", "0.3.0") and is_older("0.3.0rc1", "0.3.0")
    assert not is_older("0.3.0", "0.3.0") and not is_older("0.10.0", "0.9.0")
    assert is_older("", "0.3.0") and is_older("dev", "0.3.0")


def sent(**fields: object) -> SentGate:
    values: dict[str, object] = {
        "sent_at": SENT_AT,
        "command_status": "accepted",
        "command_detail": "asked the updater for 0.3.0",
        "version": "0.2.0",
        "update_result": None,
    } | fields
    return SentGate(**values)  # type: ignore[arg-type]


def result(outcome: str, at: datetime, version: str = "0.3.0", reason: str = "") -> dict[str, str]:
    return {"outcome": outcome, "version": version, "reason": reason, "at": at.isoformat()}


def test_a_sent_gate_is_judged_by_its_answer_its_version_and_its_updaters_result() -> None:
    soon = SENT_AT + timedelta(seconds=90)
    assert judge(sent(), "0.3.0", 600, soon) is None  # not yet
    assert judge(sent(version="0.3.0"), "0.3.0", 600, soon) == (UPDATED, "running 0.3.0")
    refused = sent(command_status="refused", command_detail="already running 0.3.0")
    assert judge(refused, "0.3.0", 600, soon) == (
        FAILED,
        "the gate refused it: already running 0.3.0",
    )
    failed = sent(update_result=result("update_failed", soon, reason="no frame within 60 s"))
    assert judge(failed, "0.3.0", 600, soon) == (FAILED, "update_failed: no frame within 60 s")
    rejected = sent(update_result=result("update_refused", soon, reason="bad_signature"))
    assert judge(rejected, "0.3.0", 600, soon) == (FAILED, "update_refused: bad_signature")
    assert judge(sent(), "0.3.0", 600, SENT_AT + timedelta(seconds=601)) == (
        NO_ANSWER,
        "no result within 600 s",
    )
    unsent = sent(command_status="unsent", command_detail="no collector sent it in time")
    assert judge(unsent, "0.3.0", 600, soon) == (
        NO_ANSWER,
        "never sent: no collector sent it in time",
    )


def test_an_earlier_result_or_another_versions_is_not_this_rollouts() -> None:
    soon = SENT_AT + timedelta(seconds=90)
    earlier = sent(update_result=result("update_failed", SENT_AT - timedelta(hours=1)))
    assert judge(earlier, "0.3.0", 600, soon) is None
    other = sent(update_result=result("update_failed", soon, version="0.2.5"))
    assert judge(other, "0.3.0", 600, soon) is None
    # A gate clock a little behind the server's still counts (within the commands' 30 s).
    behind = sent(update_result=result("update_failed", SENT_AT - timedelta(seconds=20)))
    assert judge(behind, "0.3.0", 600, soon) == (FAILED, "update_failed")
