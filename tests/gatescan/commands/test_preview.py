"""`gatescan preview` on a gate: with the agent running (a real agent, its replay camera, a real
broker) it asks the agent through its socket, which stays the camera's only reader; with no agent
it opens the camera itself. Either way: the latest annotated JPEG written to --out and a focus
line per frame."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2

from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import write_replay_folder
from tests.support.cli import run_gatescan
from tests.support.gate_thread import running_gate
from tests.support.waiting import wait_until

CODE = b"GATESCAN-PREVIEW-CLI-0001"


def focus_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("focus ")]


def test_without_an_agent_the_command_opens_the_camera_itself(tmp_path: Path) -> None:
    write_replay_folder(tmp_path / "frames", [CODE], frame_size=(1280, 720))
    out = tmp_path / "aim.jpg"
    result = run_gatescan(
        [
            "preview", "--source", f"replay:{tmp_path / 'frames'}?loop=true&fps=10",
            "--data-dir", str(tmp_path / "data"), "--out", str(out), "--frames", "3",
        ],
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the camera (no agent runs)" in result.stderr
    lines = focus_lines(result.stdout)
    assert len(lines) == 3 and "(peak " in lines[0] and "1 code(s) read" in lines[-1]
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] == 640


def test_with_the_agent_running_it_asks_the_agent(broker: LocalBroker) -> None:
    # A short folder: the agent's socket lives in its data dir, and a unix socket's path is
    # at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="gs-") as folder:
        root = Path(folder)
        with running_gate(
            root, broker_url=broker.url, device_id="gate-aim", site_id="hq", frames=[CODE]
        ) as gate:
            socket = root / "data" / "preview.sock"
            wait_until(socket.exists, 10, "the agent's preview socket")
            out = root / "aim.jpg"
            started = time.monotonic()
            result = run_gatescan(
                ["preview", "--source", f"replay:{root}", "--data-dir", str(root / "data"),
                 "--out", str(out), "--frames", "2"],
                timeout=60,
            )  # fmt: skip
            elapsed = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            assert "the running agent" in result.stderr  # not --source, a folder of no images
            assert len(focus_lines(result.stdout)) == 2
            assert cv2.imread(str(out)) is not None
            wait_until(lambda: gate.agent.preview.sessions() == 0, 10, "the session to end")
            print(f"\ngatescan preview via the agent: 2 frames in {elapsed:.2f} s")
