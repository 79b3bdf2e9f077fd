"""`gatescan update` as a process on a temporary root standing in for the gate's /: real signed
bundles (made by `gatescan release sign`), real links, a real agent process per release that does
or does not come up healthy, its READY on a real notify socket (docs/operations.md, "Updating
gates")."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.update.failpoints import KNOWN_POINTS, UPDATER_FAILPOINTS_ENV
from device.update.health import read_health
from device.update.layout import is_whole
from device.update.requests import read_result, request_update
from tests.device.update.gate_root import GateRoot, alive, cli, env, keygen, new_gate_root
from tests.support.waiting import wait_until

WINDOW_S = 5.0


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[GateRoot]:
    """A gate running release 0.1.0 (installed by the updater itself on an empty /opt)."""
    made = new_gate_root(tmp_path)
    try:
        done = made.update("--to", "0.1.0", "--from", str(made.release("0.1.0")))
        assert done.returncode == 0, done.stderr
        yield made
    finally:
        made.stop_agent()


def state(gate: GateRoot) -> tuple[str | None, str | None, list[str]]:
    """What a refused update must leave as it was: the links and the releases."""
    layout = gate.layout
    releases = sorted(path.name for path in layout.releases.iterdir())
    return layout.running_version(), layout.linked_version(layout.previous), releases


def test_a_good_release_is_switched_to_and_stays(gate: GateRoot) -> None:
    old_pid = gate.agent_pid()
    started = time.monotonic()
    done = gate.update("--to", "0.2.0", "--from", str(gate.release("0.2.0")))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    layout = gate.layout
    assert layout.running_version() == "0.2.0"
    assert layout.linked_version(layout.previous) == "0.1.0"
    assert is_whole(layout.release("0.2.0"))
    result = read_result(layout.result)
    assert result is not None
    assert result["outcome"] == "updated"
    assert (result["version"], result["from"], result["running"]) == ("0.2.0", "0.1.0", "0.2.0")
    # The old agent was stopped, the new one runs and is the one that reported health.
    pid = gate.agent_pid()
    assert pid is not None and pid != old_pid
    assert old_pid is not None and not alive(old_pid)
    health = read_health(layout.agent_data)
    assert health is not None and health.healthy_as("0.2.0", pid)
    time.sleep(2)  # it stays: nothing switches it back later
    assert layout.running_version() == "0.2.0" and alive(pid)
    print(f"update 0.1.0 -> 0.2.0: {took:.2f} s, healthy {result['healthy_after_s']} s after")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("no_broker", "said READY but never reported the broker connection within 5 s"),
        ("no_ready", "did not say READY within 5 s"),
        ("crash", "did not say READY within 5 s"),
    ],
)
def test_a_release_whose_agent_is_not_healthy_rolls_back_by_itself(
    gate: GateRoot, kind: str, reason: str
) -> None:
    started = time.monotonic()
    done = gate.update("--to", "0.2.0", "--from", str(gate.release("0.2.0", kind)))
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "update_failed" in done.stderr
    layout = gate.layout
    assert layout.running_version() == "0.1.0"
    assert layout.linked_version(layout.previous) is None  # as it was before the update
    result = read_result(layout.result)
    assert result is not None
    assert result["outcome"] == "update_failed"
    assert reason in result["reason"] and "back on 0.1.0" in result["reason"], result
    # The old release's agent runs again, healthy, in a new process.
    pid = wait_until(gate.agent_pid, 5, "the old agent")
    wait_until(
        lambda: (h := read_health(layout.agent_data)) is not None and h.healthy_as("0.1.0", pid),
        5,
        "the old release healthy again",
    )
    assert took < WINDOW_S + 5, took
    print(
        f"{kind}: rolled back in {took:.2f} s (window {result['health_window_s']} s, "
        f"switch back and READY {result['rollback_s']} s)"
    )


def _rewrite(bundle: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of a bundle with members replaced (bytes) or left out (None)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w") as copy:
        for member in source.getmembers():
            data = source.extractfile(member)
            body = data.read() if data is not None else b""
            if member.name in change:
                replaced = change[member.name]
                if replaced is None:
                    continue
                body = replaced
                member.size = len(body)
            copy.addfile(member, io.BytesIO(body))
    return out


def test_a_tampered_an_unsigned_and_a_wrong_key_release_are_refused_and_nothing_changes(
    gate: GateRoot, tmp_path: Path
) -> None:
    good = gate.release("0.2.0")
    script = "payload/bin/gatescan"
    with tarfile.open(good) as tar:
        member = tar.extractfile(script)
        assert member is not None
        body = member.read()
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        manifest_bytes = manifest.read()
    other_key, _line = keygen(tmp_path / "other-keys")
    grown = b"\nimport os  # evil\n"
    forged_manifest = manifest_bytes.replace(b'"version":"0.2.0"', b'"version":"0.3.0"')
    cases = {
        "tampered": (
            _rewrite(good, tmp_path / "t.tar", {script: body.replace(b"good", b"evil")}),
            "payload/bin/gatescan's SHA-256 differs from the signed manifest's",
        ),
        "grown": (
            _rewrite(good, tmp_path / "g.tar", {script: body + grown}),
            # the script names this checkout's python: its size is the clone's, not a constant
            f"payload/bin/gatescan is {len(body + grown)} bytes, signed as {len(body)}",
        ),
        "unsigned": (
            _rewrite(good, tmp_path / "u.tar", {"manifest.sig": None}),
            "no manifest.sig: not a signed release",
        ),
        "wrong key": (
            gate.release("0.2.0", key=other_key),
            "which this gate does not trust",
        ),
        "manifest changed": (
            _rewrite(good, tmp_path / "m.tar", {"manifest.json": forged_manifest}),
            "does not verify",
        ),
        "not a tar": (gate.work / "VERSION", "not a release bundle"),
        "missing": (gate.work / "nothing.tar", "cannot read"),
    }
    (gate.work / "VERSION").write_text("0.2.0\n")
    before = state(gate)
    pid = gate.agent_pid()
    for name, (bundle, said) in cases.items():
        done = gate.update("--to", "0.2.0", "--from", str(bundle))
        assert done.returncode == 2, (name, done.stderr)
        assert said in done.stderr, (name, done.stderr)
        assert state(gate) == before, name
        assert gate.agent_pid() == pid, name  # the agent was not even restarted
        result = read_result(gate.layout.result)
        assert result is not None and result["outcome"] == "update_refused", name
    # The same checks pass the untouched bundle: the refusals were the changes'.
    assert gate.update("--to", "0.2.0", "--from", str(good)).returncode == 0


def test_a_downgrade_needs_its_flag_and_the_version_asked_must_be_the_signed_one(
    gate: GateRoot,
) -> None:
    old = gate.release("0.0.9")
    before = state(gate)
    done = gate.update("--to", "0.0.9", "--from", str(old))
    assert done.returncode == 2
    assert (
        "0.0.9 is older than 0.1.0, which this gate runs: going back needs --allow-downgrade"
        in (done.stderr)
    )
    # An old signed release cannot be passed off as a new version either.
    renamed = gate.update("--to", "0.5.0", "--from", str(old))
    assert renamed.returncode == 2
    assert "signed as version 0.0.9, not 0.5.0" in renamed.stderr
    assert state(gate) == before
    allowed = gate.update("--to", "0.0.9", "--from", str(old), "--allow-downgrade")
    assert allowed.returncode == 0, allowed.stderr
    assert gate.layout.running_version() == "0.0.9"


@pytest.mark.parametrize("point", KNOWN_POINTS)
def test_an_updater_killed_between_steps_leaves_current_on_a_whole_release_and_recovers(
    gate: GateRoot, point: str
) -> None:
    bundle = gate.release("0.2.0")
    args = gate.update_args("--to", "0.2.0", "--from", str(bundle))
    stderr = gate.work / "updater.err"
    with stderr.open("w") as err:
        updater = subprocess.Popen(
            [sys.executable, "-m", "gatescan.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**env(), UPDATER_FAILPOINTS_ENV: f"{point}=stop"},
        )
        try:
            wait_until(lambda: f"failpoint {point}: stopped" in stderr.read_text(), 30, point)
        finally:
            updater.send_signal(signal.SIGKILL)  # the process this test started, by its pid
            updater.wait(timeout=10)
    layout = gate.layout
    current = layout.running_version()
    assert current in ("0.1.0", "0.2.0")
    assert is_whole(layout.current.resolve()), point
    assert os.access(layout.current / "bin" / "gatescan", os.X_OK)
    # At boot (the unit's --from-request finding no request) or by hand (--recover) the updater
    # finishes what it was doing: back on 0.1.0.
    how = "--from-request" if KNOWN_POINTS.index(point) % 2 else "--recover"
    done = cli(*gate.update_args(how))
    assert done.returncode == 0, done.stderr
    assert layout.running_version() == "0.1.0"
    result = read_result(layout.result)
    assert result is not None and result["outcome"] == "update_failed", result
    assert "the updater stopped" in result["reason"]
    pid = wait_until(gate.agent_pid, 5, "an agent")
    wait_until(
        lambda: (h := read_health(layout.agent_data)) is not None and h.healthy_as("0.1.0", pid),
        10,
        "0.1.0's agent healthy",
    )
    assert not layout.progress.exists()
    # And the next update goes through.
    assert gate.update("--to", "0.2.0", "--from", str(bundle)).returncode == 0


def test_the_agent_asks_through_its_request_file_and_reads_the_result(gate: GateRoot) -> None:
    layout = gate.layout
    downloads = layout.agent_data / "updates"
    downloads.mkdir()
    bundle = gate.release("0.2.0")
    (downloads / "0.2.0.tar").write_bytes(bundle.read_bytes())
    request = request_update(layout.agent_data, "0.2.0", "0.2.0.tar")
    assert request == layout.request
    done = cli(*gate.update_args("--from-request"))
    assert done.returncode == 0, done.stderr
    assert not request.exists()  # taken
    result = read_result(layout.result)
    assert result is not None and result["outcome"] == "updated"
    assert layout.running_version() == "0.2.0"


def test_a_request_cannot_point_the_updater_outside_the_agents_downloads(gate: GateRoot) -> None:
    layout = gate.layout
    for source in ("../../../etc/shadow", "/etc/shadow", ".hidden"):
        layout.request.write_text(json.dumps({"version": "0.2.0", "source": source}))
        done = cli(*gate.update_args("--from-request"))
        assert done.returncode == 2, source
        assert "an http(s) URL, or a file name in the data dir's updates/" in done.stderr
        assert not layout.request.exists()
    # Nor make it follow a link to a file only root may read.
    layout.request.symlink_to("/etc/shadow")
    done = cli(*gate.update_args("--from-request"))
    assert done.returncode == 2 and "no request to take" in done.stderr
    assert layout.running_version() == "0.1.0"


def test_a_release_is_fetched_by_url(gate: GateRoot) -> None:
    bundle = gate.release("0.2.0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(gate.work))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            missing = gate.update("--to", "0.2.0", "--from", f"{base}/no-such.tar")
            done = gate.update("--to", "0.2.0", "--from", f"{base}/{bundle.name}")
        finally:
            server.shutdown()
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert done.returncode == 0, done.stderr
    assert gate.layout.running_version() == "0.2.0"
