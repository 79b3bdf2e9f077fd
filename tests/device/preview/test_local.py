"""`gatescan preview` asks the running agent through its socket (0600): frames while connected,
the session ended when the client goes; no socket, no agent."""

from __future__ import annotations

import stat
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from device.preview.local import LocalPreview, agent_frames
from device.preview.tap import PreviewTap
from tests.support.waiting import wait_until

FRAME = np.random.default_rng(2).integers(0, 256, (480, 640), dtype=np.uint8)


def test_the_agents_socket_gives_frames_while_the_client_stays() -> None:
    with tempfile.TemporaryDirectory() as folder:  # short: a unix socket's path is <108 bytes
        path = Path(folder) / "preview.sock"
        tap = PreviewTap()
        local = LocalPreview(tap, path)
        assert local.start()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        stop = threading.Event()

        def camera() -> None:
            while not stop.is_set():
                tap.offer(FRAME, 0)
                time.sleep(0.02)

        threading.Thread(target=camera, daemon=True).start()
        try:
            frames = agent_frames(path, fps=4)
            assert frames is not None
            got = [next(frames) for _ in range(3)]
            assert [h.seq for h, _ in got] == sorted(h.seq for h, _ in got)
            assert all(jpeg.startswith(b"\xff\xd8") for _, jpeg in got)
            assert tap.sessions() == 1
            frames.close()  # the client goes
            wait_until(lambda: tap.sessions() == 0, 5.0, "the local session to end")
        finally:
            stop.set()
            local.close()
            tap.close()
        assert not path.exists()
        assert agent_frames(path, fps=2) is None
