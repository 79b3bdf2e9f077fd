"""A small HTTPS enrolment service that speaks protocol/enrolment.py, for the gate's tests: the
real server side (`gatescan gate add`, the registry) is built apart; this one holds its tokens in
a dict. Its certificate is the site's broker certificate (signed by the site's own CA, from
`gatescan site init`), so the gate's CA fingerprint check and verified exchange run for real.

    with EnrolmentServer(site, tokens={TOKEN: grant}) as server:
        code = server.code(TOKEN)            # the text an enrolment card carries
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import ValidationError

from protocol.enrolment import (
    CA_PATH,
    EXCHANGE_PATH,
    HANDSHAKE_VERSION,
    EnrolmentCode,
    EnrolmentGrant,
    EnrolmentRefusal,
    EnrolmentRequest,
    ca_fingerprint,
)
from protocol.verdicts import Direction
from server.site.installation import Installation

# A refusal reason a token is set to answer with, instead of a grant.
Answer = EnrolmentGrant | str

_STATUS = {"unknown_token": 404, "used": 409, "expired": 410, "revoked": 403, "busy": 503}


class EnrolmentServer:
    def __init__(
        self,
        *,
        certfile: Path,
        keyfile: Path,
        ca_file: Path,
        tokens: Mapping[str, Answer],
        served_ca: Path | None = None,
    ) -> None:
        """`served_ca`: the CA the server shows at ca.crt, if not `ca_file` (a foreign server)."""
        self.ca_pem = ca_file.read_text(encoding="ascii")
        self.served_ca_pem = (served_ca or ca_file).read_text(encoding="ascii")
        self.tokens: dict[str, Answer] = dict(tokens)
        self.requests: list[EnrolmentRequest] = []
        self.lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile, keyfile)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def code(self, token: str, ca_sha256: str | None = None) -> str:
        fingerprint = ca_sha256 or ca_fingerprint(ssl.PEM_cert_to_DER_cert(self.ca_pem.strip()))
        return EnrolmentCode(
            version=HANDSHAKE_VERSION, server=self.url, token=token, ca_sha256=fingerprint
        ).text()

    def answer(self, body: bytes) -> tuple[int, bytes]:
        try:
            request = EnrolmentRequest.model_validate_json(body)
        except ValidationError:
            refusal = EnrolmentRefusal(reason="unsupported_handshake", message="bad request")
            return 400, refusal.model_dump_json().encode()
        with self.lock:
            self.requests.append(request)
            answer = self.tokens.get(request.token, "unknown_token")
            if isinstance(answer, EnrolmentGrant):
                self.tokens[request.token] = "used"  # spent with the grant, once
                return 200, answer.model_dump_json().encode()
        refusal = EnrolmentRefusal(reason=answer, message=f"token {answer}")
        return _STATUS.get(answer, 400), refusal.model_dump_json().encode()

    def __enter__(self) -> EnrolmentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def site_grant(site: Installation, device_id: str, password: str) -> EnrolmentGrant:
    """The grant a server of this site gives a gate: its broker, its CA."""
    return EnrolmentGrant(
        device_id=device_id,
        site_id="Bệnh viện Chợ Rẫy",
        location="Cổng chính",
        direction=Direction.IN,
        broker_url=site.broker_url,
        username=device_id,
        password=password,
        ca_pem=site.files.ca_file.read_text(encoding="ascii"),
    )


def site_enrolment_server(
    site: Installation, tokens: Mapping[str, Answer], served_ca: Path | None = None
) -> EnrolmentServer:
    """An EnrolmentServer with the site's broker certificate, its CA the site's own."""
    return EnrolmentServer(
        certfile=site.files.certfile,
        keyfile=site.files.keyfile,
        ca_file=site.files.ca_file,
        tokens=tokens,
        served_ca=served_ca,
    )


def _handler(server: EnrolmentServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != CA_PATH:
                self._send(404, b"not found", "text/plain")
                return
            self._send(200, server.served_ca_pem.encode("ascii"), "application/x-pem-file")

        def do_POST(self) -> None:
            if self.path != EXCHANGE_PATH:
                self._send(404, b"not found", "text/plain")
                return
            length = min(int(self.headers.get("Content-Length") or 0), 65_536)
            status, body = server.answer(self.rfile.read(length))
            self._send(status, body, "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # quiet: pytest shows failures
            pass

    return Handler
