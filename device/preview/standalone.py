"""`gatescan preview` without a running agent: the camera opened here, each frame decoded (to
mark the codes read) and turned into preview frames by the same tap the agent runs; and the
command's output, the latest JPEG written whole to a file and a live focus line.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from device.camera.source import CameraError, FrameSource
from device.decode.base import Decoder
from device.frames.framing import Framing
from device.preview.tap import PreviewTap
from protocol.preview.wire import FrameHeader, unpack_frame

KEY = "local-camera"


def camera_frames(
    source: FrameSource,
    decoder: Decoder,
    framing: Framing,
    *,
    fps: float,
    stop: threading.Event,
) -> Iterator[tuple[FrameHeader, bytes]]:
    tap = PreviewTap(region=framing.region)
    made: queue.Queue[bytes] = queue.Queue(maxsize=1)

    def send(payload: bytes) -> None:
        with contextlib.suppress(queue.Empty):
            made.get_nowait()
        with contextlib.suppress(queue.Full):
            made.put_nowait(payload)

    def read() -> None:
        try:
            while not stop.is_set():
                tap.start(KEY, ttl_s=5.0, fps=fps, send=send)
                frame = source.read()
                codes = decoder.decode(framing.apply(frame))
                tap.offer(frame, len(codes))
        except CameraError:
            stop.set()
        finally:
            tap.close()
            source.close()

    threading.Thread(target=read, name="preview-camera", daemon=True).start()
    while not stop.is_set():
        try:
            payload = made.get(timeout=0.5)
        except queue.Empty:
            continue
        yield unpack_frame(payload)


def show_frames(
    frames: Iterator[tuple[FrameHeader, bytes]],
    *,
    out: Path | None,
    seconds: float,
    count: int,
    stop: threading.Event,
    echo: TextIO,
) -> int:
    """Write each frame's JPEG to `out` (a new file renamed over it) and print its focus line;
    the number of frames shown."""
    deadline = time.monotonic() + seconds if seconds > 0 else None
    shown = 0
    for header, jpeg in frames:
        if out is not None:
            temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            temp.write_bytes(jpeg)
            temp.replace(out)
        shown += 1
        codes = f", {header.codes} code(s) read" if header.codes else ""
        echo.write(
            f"focus {header.focus:.1f} (peak {header.peak:.1f}) "
            f"{header.width}x{header.height} {len(jpeg) // 1024} KiB{codes}\n"
        )
        echo.flush()
        if stop.is_set() or (count and shown >= count):
            break
        if deadline is not None and time.monotonic() > deadline:
            break
    return shown
