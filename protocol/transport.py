"""The MQTT connection's socket, as both sides set it up beyond paho's defaults."""

from __future__ import annotations

import socket
from typing import Any


def send_at_once(sock: Any) -> bool:
    """Turn Nagle's algorithm off on a TCP socket (TLS-wrapped too): a small packet (an event, an
    ack) goes out at once instead of waiting until the peer acknowledges the previous one at TCP
    level, which Linux delays by up to 40 ms. False where it does not apply (no socket, a Unix or
    WebSocket transport) or the system refuses."""
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        return False
    return True
