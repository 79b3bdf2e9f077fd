"""The notify protocol against real unix datagram sockets that the tests bind, as systemd does."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.system.systemd_notify import SystemdNotifier, socket_address, watchdog_interval


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class NotifySocket:
    """The service manager's end: a bound datagram socket; `messages()` reads what arrived."""

    def __init__(self, address: str) -> None:
        bind_to = socket_address(address)
        assert bind_to is not None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.settimeout(2.0)

    def receive(self) -> str:
        return self.sock.recv(4096).decode("utf-8")

    def messages(self) -> list[str]:
        """Every message waiting now (none sent is none received: the socket is local)."""
        self.sock.setblocking(False)
        found = []
        try:
            while True:
                found.append(self.sock.recv(4096).decode("utf-8"))
        except BlockingIOError:
            return found
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, NotifySocket]]:
    name = f"@gatescan-test-{uuid.uuid4().hex}"
    listener = NotifySocket(name)
    yield name, listener
    listener.sock.close()


def test_ready_and_status_reach_a_socket_at_a_path(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    listener = NotifySocket(path)
    notifier = SystemdNotifier(path)
    try:
        notifier.ready("scanning, offline")
        assert listener.receive() == "READY=1\nSTATUS=scanning, offline"
        notifier.status("scanning, online")
        assert listener.receive() == "STATUS=scanning, online"
        notifier.stopping()
        assert listener.receive() == "STOPPING=1"
    finally:
        notifier.close()
        listener.sock.close()


def test_an_abstract_socket_is_written_with_a_leading_at(
    abstract_socket: tuple[str, NotifySocket],
) -> None:
    name, listener = abstract_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": name})
    notifier.ready()
    assert listener.receive() == "READY=1"
    notifier.close()


def test_a_status_cannot_smuggle_another_assignment(
    abstract_socket: tuple[str, NotifySocket],
) -> None:
    name, listener = abstract_socket
    notifier = SystemdNotifier(name)
    notifier.status("camera\nREADY=1")
    assert listener.receive() == "STATUS=camera READY=1"
    notifier.close()


def test_watchdog_pings_at_most_every_half_interval(
    abstract_socket: tuple[str, NotifySocket],
) -> None:
    name, listener = abstract_socket
    clock = FakeMonotonic()
    notifier = SystemdNotifier(name, watchdog_seconds=10.0, clock=clock)
    sent = []
    for _ in range(30):  # a frame every 0.5 s for 15 s
        sent.append(notifier.watchdog())
        clock.now += 0.5
    assert sent.count(True) == 3  # at 0, 5 and 10 s
    assert listener.messages() == ["WATCHDOG=1"] * 3
    notifier.close()


def test_no_watchdog_pings_unless_systemd_asked_for_them(
    abstract_socket: tuple[str, NotifySocket],
) -> None:
    name, listener = abstract_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": name})
    assert not notifier.watchdog()
    assert listener.messages() == []
    notifier.close()


def test_watchdog_interval_is_read_for_this_process_only() -> None:
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_interval({}, pid) is None


@pytest.mark.parametrize("usec", ["0", "-5", "thirty"])
def test_a_bad_watchdog_usec_is_ignored_with_a_warning(
    usec: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": usec}, os.getpid()) is None
    assert "WATCHDOG_USEC" in caplog.text


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.status("x")
    notifier.stopping()
    assert not notifier.watchdog()
    notifier.close()


def test_a_vanished_socket_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone"), watchdog_seconds=0.001)
    for _ in range(5):
        notifier.status("still here")
    assert caplog.text.count("systemd notify socket") == 1
    notifier.close()


def test_a_socket_that_is_not_unix_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = SystemdNotifier("vsock:2:1234")
    assert not notifier.enabled
    assert "vsock:2:1234" in caplog.text
