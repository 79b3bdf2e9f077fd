"""Scenario 8: the gate's data dir fills up (a real 1 MiB tmpfs, filled by a file), and empties.

The real agent process and collector process, a real Mosquitto. The gate must keep reading and
lighting, report the `storage` fault in its retained status and its telemetry, leave its journal
whole, and recover by itself when space returns: the events it lit for while the disk was full
are held in memory, journaled when writes succeed again, and stored once, in scan order.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from device.system.health import Fault
from server.store.database import DeviceRecord
from tests.support.fault_site import (
    Figures,
    JournalContents,
    Site,
    code_hash,
    distinct_cards,
    read_journal,
    tally,
    today,
)
from tests.support.lane import Lane, LaneGate, show_and_wait, start_lane_agent
from tests.support.waiting import wait_until

DISK_SIZE = "1m"
BEFORE, DURING, AFTER = 3, 16, 3
MIN_HELD = 8  # a 4 KiB block a log file already has takes about 5 more entries


@pytest.fixture
def small_disk(site: Site) -> Iterator[Path]:
    """The gate's data dir as a 1 MiB tmpfs (root only: CI runs as root; fails, never skips)."""
    mount_point = site.data_dir
    mount_point.mkdir(parents=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs"]
    mounted = subprocess.run([*command, str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a {DISK_SIZE} tmpfs for the gate's data dir (this scenario needs root, "
            f"as in CI): {mounted.stderr.strip() or mounted.returncode}"
        )
    yield mount_point
    for process in site.processes:  # nothing may hold a file on it while it is unmounted
        if process.running():
            process.kill()
    subprocess.run(["umount", str(mount_point)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte; returns it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (64 * 1024, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def journal_copy(data_dir: Path, into: Path) -> JournalContents:
    """The journal of the running agent, opened from a copy of its files (not its temp files,
    which come and go with every write the full disk refuses)."""
    shutil.copytree(
        data_dir / "journal", into / "journal", ignore=shutil.ignore_patterns("lock", ".*", "*.tmp")
    )
    return read_journal(into, since=today() - timedelta(days=1))


def device(site: Site) -> DeviceRecord | None:
    return next((d for d in site.store.devices() if d.device_id == site.device_id), None)


def reported_faults(site: Site) -> tuple[list[str], list[str]] | None:
    """(faults in the retained status, faults in the latest telemetry) as the collector has them."""
    record = device(site)
    if record is None or record.telemetry is None:
        return None
    return list(record.faults), list(record.telemetry.get("faults", []))


def wait_for_faults(site: Site, faults: list[str], since: float, timeout: float = 10) -> None:
    """Until status and a telemetry received after `since` (epoch s) both say `faults`."""

    def reported() -> bool:
        record = device(site)
        if record is None or record.telemetry_at is None:
            return False
        fresh = record.telemetry_at.timestamp() > since
        return fresh and reported_faults(site) == (faults, faults)

    wait_until(reported, timeout, f"status and telemetry to report faults {faults}")


def test_full_disk_keeps_the_gate_lighting_and_recovers_by_itself_with_nothing_lost(
    site: Site, small_disk: Path, tmp_path: Path, record_figures: Callable[[Figures], None]
) -> None:
    site.start_collector()
    lane = Lane(tmp_path / "lane")
    agent = start_lane_agent(
        tmp_path,
        LaneGate(lane.folder),
        broker_url=site.broker.url,
        device_id=site.device_id,
        data_dir=small_disk,
    )
    site.processes.append(agent)
    agent.wait_for_log("indicator: idle", 30)
    cards = distinct_cards(BEFORE + DURING + AFTER, batch=8)
    for card in cards[:BEFORE]:
        assert "journaled as seq" in show_and_wait(agent, lane, card)
    wait_until(lambda: site.stored_count() == BEFORE, 15, "the first codes stored")

    filler = fill(small_disk)
    full_since = time.time()
    lines = [show_and_wait(agent, lane, card) for card in cards[BEFORE : BEFORE + DURING]]
    # An append may still fit in a block its file already has; from the first refused write on,
    # every scan is held, in order.
    outcome = ["held" if "held in memory" in line else "journaled" for line in lines]
    held = outcome.count("held")
    assert outcome == ["journaled"] * (DURING - held) + ["held"] * held, "\n".join(lines)
    assert held >= MIN_HELD, f"only {held} scans met the full disk:\n" + "\n".join(lines)
    agent.wait_for_log(f"indicator: fault (faults: {Fault.STORAGE})", 5)
    wait_for_faults(site, [Fault.STORAGE], since=full_since)
    assert agent.running()
    # A copy of the journal files as they are on the full disk opens, whole. An ack that came
    # after the disk filled could not take its event out of the outbox: it is resent later.
    mid_fault = journal_copy(small_disk, tmp_path / "journal-copy")
    assert len(mid_fault.history) == BEFORE + DURING - held
    assert {e.event_id for e in mid_fault.outbox} <= {e.event_id for e in mid_fault.history}

    filler.unlink()
    freed = time.monotonic()
    agent.wait_for_log(f"journal: writable again; {held} held events journaled", 10)
    wait_until(lambda: site.stored_count() == BEFORE + DURING, 15, "the held codes stored")
    wait_for_faults(site, [], since=time.time())
    recover_s = time.monotonic() - freed
    for card in cards[BEFORE + DURING :]:
        assert "journaled as seq" in show_and_wait(agent, lane, card)
    wait_until(lambda: site.stored_count() == len(cards), 15, "the last codes stored")
    assert agent.stop() == 0, agent.log_text()[-3000:]

    journal = read_journal(small_disk, since=today() - timedelta(days=1))
    stored = site.stored()
    count = tally(journal.history, stored)
    assert (count.shown, count.stored, count.duplicates, count.lost) == (
        len(cards),
        len(cards),
        0,
        0,
    )
    assert journal.outbox == []
    by_seq = sorted(stored, key=lambda entry: entry.seq)
    assert [entry.code_sha256 for entry in by_seq] == [code_hash(card) for card in cards], (
        "held events keep scan order"
    )
    record_figures(
        Figures(
            "8",
            f"Disk full ({DISK_SIZE} tmpfs data dir), {DURING} codes shown after filling it",
            count,
            recover_s,
            notes=f"{held} scans lit and held in memory while full ({DURING - held} still fitted "
            "in blocks the journal had); recover = file deleted to every held event stored and "
            "the storage fault cleared",
        )
    )
