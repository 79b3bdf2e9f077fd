"""Alerts to people: a webhook (JSON, HMAC-signed) and e-mail (SMTP with STARTTLS) (issue 16).

    dispatcher = AlertDispatcher([Route(WebhookSender(url, secret)), Route(mail, sites={"hq"})])
    dispatcher.deliver(changes)          # from AlertTracker.update

**The webhook.** `POST` of JSON `{"version": 1, "changes": [{"event": "opened"|"cleared", "key",
"kind", "site_id", "device_id", "summary_en", "summary_vi", "first_seen", "at"}]}` with headers
`X-Gatescan-Timestamp` (Unix seconds) and `X-Gatescan-Signature: sha256=<hex>`, the HMAC-SHA256
of `timestamp + "." + body` under the shared secret: a receiver (a chat bot, a Zalo or Telegram
relay) checks it and refuses a timestamp more than 5 minutes off (a replay). A plain `text`
field carries the same, one line per change, for relays that just forward text.

**E-mail.** Plain text in Vietnamese then English, one message per delivery; STARTTLS is
required unless the route says otherwise (a relay on localhost), with the system's CAs or a
given CA file; a login when one is configured.

**Never a storm.** Each delivery is one message per route, whatever the number of changes (a
switch that takes 40 gates offline is one message listing 40, not 40 messages). A route that
fails keeps its undelivered changes and tries again at the next delivery, at most
`MAX_PENDING` of them (the oldest go first), so an outage of the mail server neither loses the
latest news nor grows without bound.

**The managers of each site.** Besides the routes alerts.toml names, `RecipientRoutes` makes a
route per address from the accounts at each delivery (server/accounts/users.py:
`Accounts.alert_recipients`): an alert of site S goes to each manager holding S who has an
e-mail address (and the admins, when configured: every site and the installation's own). Each
address gets one message per delivery and keeps its own undelivered changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from server.alerts.tracker import Change

log = logging.getLogger("gatescan.alerts")

TIMEOUT_S = 10.0
MAX_PENDING = 500


class DeliveryError(RuntimeError):
    """A route could not deliver; the message says why (never a secret)."""


class Sender(Protocol):
    name: str

    def send(self, changes: Sequence[Change]) -> None:
        """Deliver these changes as one message; DeliveryError when it could not."""
        ...


def change_fields(change: Change) -> dict[str, Any]:
    problem = change.alert.problem
    return {
        "event": change.event,
        "key": problem.key,
        "kind": problem.kind,
        "site_id": problem.site_id,
        "device_id": problem.device_id,
        "summary_en": problem.summary_en,
        "summary_vi": problem.summary_vi,
        "first_seen": change.alert.first_seen.isoformat(),
        "at": change.at.isoformat(),
    }


def change_line(change: Change, language: str) -> str:
    problem = change.alert.problem
    if language == "vi":
        word = "CÓ SỰ CỐ" if change.event == "opened" else "ĐÃ HẾT"
        return f"[{word}] {problem.summary_vi}"
    word = "PROBLEM" if change.event == "opened" else "CLEARED"
    return f"[{word}] {problem.summary_en}"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


@dataclass
class WebhookSender:
    url: str
    secret: bytes = field(repr=False)
    name: str = "webhook"
    timeout_s: float = TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("a webhook is https:// (http only to this machine)")
        if len(self.secret) < 16:
            raise ValueError("a webhook secret is at least 16 bytes")

    def send(self, changes: Sequence[Change]) -> None:
        text = "\n".join(change_line(change, "vi") for change in changes)
        body = json.dumps(
            {"version": 1, "changes": [change_fields(c) for c in changes], "text": text},
            ensure_ascii=False,
        ).encode("utf-8")
        stamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "gatescan-alerts",
                "X-Gatescan-Timestamp": stamp,
                "X-Gatescan-Signature": signature(self.secret, stamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"the webhook answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"the webhook cannot be reached: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"the webhook answered {status}")


@dataclass
class SmtpSender:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    name: str = "e-mail"
    starttls: bool = True
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = TIMEOUT_S

    def send(self, changes: Sequence[Change]) -> None:
        opened = sum(change.event == "opened" for change in changes)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = (
            f"gatescan: {opened} sự cố mới, {len(changes) - opened} đã hết"
            f" / {opened} new, {len(changes) - opened} cleared"
        )
        vi = "\n".join(change_line(change, "vi") for change in changes)
        en = "\n".join(change_line(change, "en") for change in changes)
        message.set_content(f"{vi}\n\n--\n\n{en}\n")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as client:
                if self.starttls:
                    context = ssl.create_default_context(
                        cafile=str(self.ca_file) if self.ca_file else None
                    )
                    context.minimum_version = ssl.TLSVersion.TLSv1_2
                    client.starttls(context=context)
                if self.username is not None:
                    client.login(self.username, self.password or "")
                client.send_message(message)
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError("the mail server does not offer STARTTLS") from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise DeliveryError(f"the mail server: {type(exc).__name__}: {exc}") from None


@dataclass
class Route:
    sender: Sender
    sites: frozenset[str] | None = None  # None: every site, and the installation's own problems
    pending: list[Change] = field(default_factory=list)

    def wants(self, change: Change) -> bool:
        site = change.alert.problem.site_id
        return self.sites is None or (site != "" and site in self.sites)


class RecipientRoutes:
    """A route per address, from `recipients()` ({address: the sites it hears of, None for
    every site and the installation's own}) asked again at each delivery; a route keeps its
    pending changes while its address stays listed."""

    def __init__(
        self,
        recipients: Callable[[], dict[str, frozenset[str] | None]],
        sender_to: Callable[[str], Sender],
    ) -> None:
        self._recipients = recipients
        self._sender_to = sender_to
        self._routes: dict[str, Route] = {}

    def __call__(self) -> list[Route]:
        try:
            wanted = self._recipients()
        except Exception:  # the accounts cannot be read: the routes as they were
            log.exception("alerts: the managers' addresses cannot be read")
            return list(self._routes.values())
        routes = {}
        for address, sites in sorted(wanted.items()):
            route = self._routes.get(address) or Route(self._sender_to(address))
            route.sites = sites
            routes[address] = route
        self._routes = routes
        return list(routes.values())


class AlertDispatcher:
    def __init__(
        self, routes: Iterable[Route], more_routes: Callable[[], list[Route]] | None = None
    ) -> None:
        self.routes = list(routes)
        self.more_routes = more_routes  # asked at each delivery (RecipientRoutes)

    def deliver(self, changes: Sequence[Change]) -> dict[str, str | None]:
        """One message per route holding its changes (and what it could not deliver before);
        {route sender's name: None when delivered, or why not}."""
        results: dict[str, str | None] = {}
        more = self.more_routes() if self.more_routes is not None else []
        for route in [*self.routes, *more]:
            batch = [*route.pending, *(c for c in changes if route.wants(c))]
            if not batch:
                continue
            try:
                route.sender.send(batch)
            except DeliveryError as exc:
                route.pending = batch[-MAX_PENDING:]
                results[route.sender.name] = str(exc)
                log.warning("alerts not delivered by %s (%d kept): %s", route.sender.name,
                            len(route.pending), exc)  # fmt: skip
            else:
                route.pending = []
                results[route.sender.name] = None
        return results
