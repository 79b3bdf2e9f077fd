"""Real receivers for the alert tests: an HTTP server that keeps what it is sent (`receiver`)
and an SMTP server with STARTTLS (aiosmtpd) whose certificate a test CA signed (`mail_tls`,
`running_smtp`). A plugin of tests/conftest.py."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from gatescan.testing.broker import free_port
from server.site.certificates import (
    issue_server_certificate,
    new_authority,
    write_certificate,
    write_private_key,
)


@dataclass
class Receiver:
    url: str
    answer: int = 200
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.got.append((dict(self.headers), body))
            self.send_response(state.answer)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, _server: object, _session: Session, envelope: Envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def mail_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    ca = new_authority("gatescan test CA")
    server = issue_server_certificate(ca, ["localhost", "127.0.0.1"])
    write_certificate(tmp_path / "ca.crt", ca.certificate)
    write_certificate(tmp_path / "server.crt", server.certificate)
    write_private_key(tmp_path / "server.key", server.key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    return context, tmp_path / "ca.crt"


def running_smtp(inbox: Inbox, tls: ssl.SSLContext | None) -> Controller:
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls,
        require_starttls=tls is not None,
    )
    controller.start()
    return controller
