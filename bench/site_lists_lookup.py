"""The site policy a gate holds at 100,000 entries: how long it takes to load, and what one
lookup and one decision cost (issue 15: "well under a millisecond per lookup").

    python -m bench.site_lists_lookup [--entries 100000] [--lookups 20000]

The lists are made as the server makes them (gatescan/testing/site_policies.py: a real Ed25519
site key, keyed hashes, 256 buckets per list). Load: every bucket and the manifest applied as
MQTT messages (what a gate does at its first connect), then the same read back from the data dir
(what a gate restarted with no network does). Lookup: `HeldPolicy.listed`, an HMAC and a set
membership, for names on the list and not. Decide: `Policy.decide` in access mode for an
allow-listed card and for a valid pass (its Ed25519 signature verified), each parsed from its
bytes as the frame loop does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.figures import Figure
from device.site_policy.holder import PolicyHolder
from device.verdict.credentials import parse_credential
from device.verdict.policy import Policy
from gatescan.testing.samples import cccd_payload
from gatescan.testing.site_policies import SampleSite
from protocol.site_policy import LIST_KINDS

ENTRIES = 100_000
GOAL_LOOKUP_US = 100.0  # "well under a millisecond": a tenth of one, on this machine
GOAL_DECIDE_PASS_US = 500.0
SITE = "Bến xe Mỹ Đình"


def _site(entries: int) -> tuple[SampleSite, list[str]]:
    site = SampleSite(SITE)
    numbers = [f"{1_090_000_000 + index:012d}" for index in range(entries)]
    site.lists["allow"] = {f"cccd:{number}" for number in numbers}
    return site, numbers


def _per_call_us(action: Callable[[], object], calls: int) -> float:
    """The median of 5 runs of `calls` calls, per call, in microseconds."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            action()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def run(entries: int, lookups: int) -> dict[str, float]:
    site, numbers = _site(entries)
    messages = site.messages()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        holder = PolicyHolder(SITE, data_dir)
        started = time.perf_counter()
        for topic, payload in messages:
            holder.handle(topic, payload)
        applied_s = time.perf_counter() - started
        holder.flush(timeout=120)
        holder.close()
        started = time.perf_counter()
        reloaded = PolicyHolder(SITE, data_dir)
        loaded_s = time.perf_counter() - started
        reloaded.close()
    held = reloaded.read()
    assert held.count("allow") == entries, "the list did not load whole"
    listed = [f"cccd:{number}" for number in numbers[:: max(1, entries // lookups)]]
    absent = [f"cccd:{number}" for number in range(100_000_000_000, 100_000_000_000 + lookups)]
    hits, misses = iter(listed * 10**3), iter(absent * 10**3)
    hit_us = _per_call_us(lambda: held.listed("allow", next(hits)), len(listed))
    miss_us = _per_call_us(lambda: held.listed("allow", next(misses)), len(absent))
    assert all(held.listed("allow", subject) for subject in listed[:100])
    assert not any(held.listed("allow", subject) for subject in absent[:100])

    policy = Policy("access", held=lambda: held)
    card = parse_credential(
        cccd_payload(numbers[entries // 2], "Nguyễn Văn An", "01011990", "Nam", "Huế", "15082021")
    )
    valid_pass = parse_credential(site.issue())
    assert policy.decide(card).status == "granted" and policy.decide(valid_pass).status == "granted"
    card_us = _per_call_us(lambda: policy.decide(card), 2000)
    pass_us = _per_call_us(lambda: policy.decide(valid_pass), 2000)
    bucket_bytes = max(len(payload) for _, payload in messages)
    return {
        "applied_s": applied_s,
        "loaded_s": loaded_s,
        "hit_us": hit_us,
        "miss_us": miss_us,
        "card_us": card_us,
        "pass_us": pass_us,
        "messages": len(messages),
        "bucket_kib": bucket_bytes / 1024,
    }


def measure(quick: bool = False) -> list[Figure]:
    """The site lists' figures for `make bench` (bench/run_all.py)."""
    entries = 10_000 if quick else ENTRIES
    got = run(entries, 2_000 if quick else 20_000)
    size = f"{entries:,} entries"
    return [
        Figure(
            "policy",
            f"load from the data dir, {size}",
            got["loaded_s"] * 1000,
            "ms",
            cpu_bound=True,
            note=f"applied from {got['messages']} MQTT messages: {got['applied_s'] * 1000:.0f} ms"
            f"; largest bucket {got['bucket_kib']:.1f} KiB",
        ),
        Figure(
            "policy",
            f"one list lookup at {size} (on the list)",
            got["hit_us"],
            "us",
            at_most=GOAL_LOOKUP_US,
            cpu_bound=True,
            note=f"not on the list: {got['miss_us']:.2f} us",
        ),
        Figure(
            "policy",
            "Policy.decide, a valid pass (Ed25519 verify, lists)",
            got["pass_us"],
            "us",
            at_most=GOAL_DECIDE_PASS_US,
            cpu_bound=True,
            note=f"an allow-listed card: {got['card_us']:.1f} us",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=ENTRIES, help="entries on the allow list")
    parser.add_argument("--lookups", type=int, default=20_000, help="timed lookups per kind")
    args = parser.parse_args()
    got = run(args.entries, args.lookups)
    kinds = ", ".join(LIST_KINDS)
    print(f"site policy at {args.entries:,} allow-list entries (lists: {kinds})")
    print(
        f"  load: {got['messages']} MQTT messages applied in {got['applied_s'] * 1000:.0f} ms; "
        f"read back from the data dir in {got['loaded_s'] * 1000:.0f} ms "
        f"(largest bucket {got['bucket_kib']:.1f} KiB)"
    )
    print(
        f"  lookup: {got['hit_us']:.2f} us on the list, {got['miss_us']:.2f} us not on it "
        f"(goal <= {GOAL_LOOKUP_US:.0f} us)"
    )
    print(
        f"  Policy.decide in access mode: valid pass {got['pass_us']:.1f} us "
        f"(goal <= {GOAL_DECIDE_PASS_US:.0f} us), allow-listed card {got['card_us']:.1f} us"
    )


if __name__ == "__main__":
    main()
