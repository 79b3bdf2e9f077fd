"""`gatescan preview` on the gate itself: a unix socket in the agent's data dir (0600, the
agent's user only), through which a technician's command asks the running agent for preview
frames, since the agent holds the camera.

The client connects and sends one JSON line, `{"fps": 2}`; the agent answers with frames, each a
big-endian u32 length and a frame as protocol/preview/wire.py packs it, for as long as the client
stays connected (its session is renewed while it does, and ends when the socket closes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from device.preview.tap import PreviewTap
from protocol.preview.wire import DEFAULT_FPS, MAX_FRAME_BYTES, FrameHeader, unpack_frame

log = logging.getLogger("gatescan.preview")

SOCKET_NAME = "preview.sock"
LOCAL_TTL_S = 5.0  # renewed every second while the client is connected
HELLO_TIMEOUT_S = 2.0


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


class LocalPreview:
    """The agent's side: accepts `gatescan preview` clients while the agent runs."""

    def __init__(self, tap: PreviewTap, path: Path) -> None:
        self._tap = tap
        self.path = path
        self._server: socket.socket | None = None
        self._stopping = threading.Event()

    def start(self) -> bool:
        """Listen; False (logged) when the socket cannot be made: the agent scans anyway."""
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a socket left by an agent that was killed
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_umask = os.umask(0o177)
            try:
                server.bind(str(self.path))
            finally:
                os.umask(old_umask)
            os.chmod(self.path, 0o600)
            server.listen(2)
        except OSError as exc:
            log.warning("preview: no local socket at %s: %s", self.path, exc)
            return False
        self._server = server
        threading.Thread(target=self._accept, name="preview-local", daemon=True).start()
        return True

    def close(self) -> None:
        self._stopping.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(client,), name="preview-client", daemon=True
            ).start()

    def _serve(self, client: socket.socket) -> None:
        key = f"local-{secrets.token_hex(6)}"
        frames: queue.Queue[bytes] = queue.Queue(maxsize=1)

        def send(payload: bytes) -> None:
            with contextlib.suppress(queue.Empty):
                frames.get_nowait()  # the newest frame only
            with contextlib.suppress(queue.Full):
                frames.put_nowait(payload)

        try:
            client.settimeout(HELLO_TIMEOUT_S)
            hello = json.loads(client.makefile("rb").readline(1024) or b"{}")
            fps = float(hello.get("fps", DEFAULT_FPS)) if isinstance(hello, dict) else DEFAULT_FPS
            client.settimeout(5.0)
            while not self._stopping.is_set():
                self._tap.start(key, ttl_s=LOCAL_TTL_S, fps=fps, send=send)
                try:
                    payload = frames.get(timeout=1.0)
                except queue.Empty:
                    continue
                client.sendall(struct.pack(">I", len(payload)) + payload)
        except (OSError, ValueError) as exc:
            log.info("preview: local client gone (%s)", exc)
        finally:
            self._tap.stop(key)
            client.close()


def agent_frames(path: Path, fps: float) -> Iterator[tuple[FrameHeader, bytes]] | None:
    """Frames from the running agent's socket; None when no agent listens there."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    client.sendall(json.dumps({"fps": fps}).encode() + b"\n")
    return _read_frames(client)


def _read_frames(client: socket.socket) -> Iterator[tuple[FrameHeader, bytes]]:
    try:
        reader = client.makefile("rb")
        while True:
            head = reader.read(4)
            if len(head) < 4:
                return
            (length,) = struct.unpack(">I", head)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes from the agent")
            payload = reader.read(length)
            if len(payload) < length:
                return
            yield unpack_frame(payload)
    finally:
        client.close()
