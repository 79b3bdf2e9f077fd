"""A small TCP proxy between a gate and the broker, to break the network the ways networks break.

- `freeze()`: the connections open now stop forwarding in both directions without being closed,
  like a NAT box or a Wi-Fi bridge that lost its state: bytes sent into them vanish, nothing
  comes back, no FIN and no RST. New connections are forwarded normally, as after a real
  half-open failure the next connection works. `release_frozen()` closes the frozen ones.
- `reset()`: every open connection is aborted with an RST to both ends (a flapping link).

One thread accepts; each connection has one pump thread per direction. Shutting a socket down wakes
a pump blocked in recv (see `_Link.abort`), so stopping needs no polling.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gatescan.testing.broker import free_port

CHUNK = 65536


@dataclass
class _Link:
    """One proxied connection: the client's socket and ours to the target."""

    client: socket.socket
    upstream: socket.socket
    frozen: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def abort(self) -> None:
        """Close both sockets with an RST (SO_LINGER 0), so both ends see a reset, not a FIN."""
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):  # already gone
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # SHUT_RD wakes our pump blocked in recv and sends nothing; a FIN (SHUT_WR) would
                # let the peer see an orderly close before the RST.
                sock.shutdown(socket.SHUT_RD)
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.accepted = 0  # connections accepted since start
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def open_connections(self) -> int:
        with self._lock:
            return sum(not link.closed.is_set() and not link.frozen for link in self._links)

    def freeze(self) -> int:
        """Stop forwarding on every open connection, without closing it; returns how many."""
        with self._lock:
            live = [link for link in self._links if not link.closed.is_set()]
            for link in live:
                link.frozen = True
        return len(live)

    def release_frozen(self) -> None:
        """Close the frozen connections (the broken box finally gives up on them)."""
        for link in self._take(lambda link: link.frozen):
            link.abort()

    def reset(self) -> int:
        """Abort every open connection with an RST; returns how many were open."""
        live = self._take(lambda link: not link.closed.is_set())
        for link in live:
            link.abort()
        return len(live)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux; close() does not
            listener.close()
        for link in self._take(lambda link: True):
            link.abort()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self, wanted: Callable[[_Link], bool]) -> list[_Link]:
        with self._lock:
            taken = [link for link in self._links if wanted(link)]
            self._links = [link for link in self._links if link not in taken]
        return taken

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while (listener := self._listener) is not None:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: stop() was called
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()  # the target is down: the client sees its connection refused
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
                self.accepted += 1
            self._spawn(self._pump, "proxy-up", link, client, upstream)
            self._spawn(self._pump, "proxy-down", link, upstream, client)

    @staticmethod
    def _pump(link: _Link, source: socket.socket, sink: socket.socket) -> None:
        while not link.closed.is_set():
            try:
                data = source.recv(CHUNK)
            except OSError:
                break
            if not data:
                break
            if link.frozen:
                continue  # swallowed: the other end hears nothing, and nobody closes anything
            try:
                sink.sendall(data)
            except OSError:
                break
        if not link.frozen:
            link.abort()  # one side went away: end the other, as a plain TCP relay does
