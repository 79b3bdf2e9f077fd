"""A lane in front of the real agent's camera, which the test controls while the agent runs.

The agent's camera is a looping replay of a folder holding one image, `lane.png`, which it reads
again at every frame (hold = one frame). Writing another picture there puts another code in front
of the camera; removing it is a camera that stops delivering frames (each read fails until the
image is back). Pictures are written to a temp name and renamed, so the agent never reads half a
file. Each scan is followed through the agent's INFO log line for it ("shown recorded (ok) for
code <digest>: journaled as seq 4" or "...: held in memory"), written right after it lit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2

from device.decode.backends import make_decoder
from gatescan.testing.samples import blank_frame, render_code
from tests.support.fault_site import FRAME_SIZE, MODULE_PX, LoggedProcess, code_hash, start_agent

LANE_FPS = 20.0


class Lane:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.image = folder / "lane.png"
        self._decoder = make_decoder("pyzbar")
        self.clear()

    def show(self, payload: bytes) -> None:
        """Put this code in front of the camera (it must be one the gate's decoder reads)."""
        frame = render_code(payload, frame_size=FRAME_SIZE, module_px=MODULE_PX)
        decoded = [code.data for code in self._decoder.decode(frame)]
        if decoded != [payload]:
            raise ValueError(f"the lane picture does not decode to its payload: {decoded!r}")
        self._put(cv2.imencode(".png", frame)[1].tobytes())

    def clear(self) -> None:
        """Nobody in the lane: an empty picture."""
        self._put(cv2.imencode(".png", blank_frame(FRAME_SIZE))[1].tobytes())

    def stop_frames(self) -> None:
        """The camera stops delivering frames: every read fails until `clear()` or `show()`."""
        self.image.unlink()

    def _put(self, png: bytes) -> None:
        temp = self.folder / "lane.next"  # not an image suffix: the replay never lists it
        temp.write_bytes(png)
        os.replace(temp, self.image)


@dataclass(frozen=True)
class LaneGate:
    """Gate settings for a lane agent; everything else stays at its default."""

    lane: Path
    keepalive: int = 5
    resend_after: float = 2.0
    telemetry_interval: float = 1.0


def write_lane_config(path: Path, gate: LaneGate) -> Path:
    path.write_text(
        f'[camera]\ntype = "replay"\nfolder = "{gate.lane}"\nfps = {LANE_FPS}\n'
        f"hold = {1 / LANE_FPS}\nloop = true\n"
        f"[mqtt]\nkeepalive = {gate.keepalive}\nresend_after = {gate.resend_after}\n"
        f"telemetry_interval = {gate.telemetry_interval}\n"
        "[indicator]\nenabled = true\n",
        encoding="utf-8",
    )
    return path


def start_lane_agent(
    root: Path,
    gate: LaneGate,
    *,
    broker_url: str,
    device_id: str,
    data_dir: Path,
    log_name: str = "agent",
    env: Mapping[str, str] | None = None,
) -> LoggedProcess:
    """`python -m gatescan.cli agent` looking at the lane; its environment is the test's, plus
    `env`."""
    config = write_lane_config(root / f"{log_name}.toml", gate)
    return start_agent(
        config,
        broker_url=broker_url,
        device_id=device_id,
        data_dir=data_dir,
        log_path=root / "logs" / f"{log_name}.log",
        env=env,
    )


def scan_line(payload: bytes) -> str:
    """The start of the agent's log line for the scan of this code."""
    return f"for code {code_hash(payload)[:12]}:"


def show_and_wait(agent: LoggedProcess, lane: Lane, payload: bytes, timeout: float = 10) -> str:
    """Show a code and wait until the agent has lit for it; returns its log line."""
    lane.show(payload)
    return agent.wait_for_log(scan_line(payload), timeout).text
