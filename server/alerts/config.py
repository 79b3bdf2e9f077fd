"""alerts.toml: the rules' thresholds and where alerts go (issue 16).

    every = 30                      # seconds between looks
    clear_after = 120               # seconds a problem must be gone before "cleared" is sent
    [rules]                         # any of AlertRules' fields (server/alerts/rules.py)
    offline_min = 5
    [[webhook]]
    url = "https://relay.example.vn/gatescan"
    secret_file = "webhook.secret"  # 16 bytes or more; the receiver checks the HMAC with it
    sites = ["hq"]                  # left out: every site
    [[mail]]
    host = "smtp.example.vn"
    port = 587
    sender = "gatescan@example.vn"
    to = ["quanly@example.vn"]
    username = "gatescan"           # optional, with password_file
    password_file = "smtp.password"
    # starttls = true (the default); ca_file = "..." for a private CA
    [managers]                      # also to each site's managers, at their account's e-mail
    host = "smtp.example.vn"        # (`gatescan user email NAME ADDR`); port, sender, starttls,
    sender = "gatescan@example.vn"  # ca_file, username, password_file as for [[mail]]
    admins = false                  # true: the admins too (every site, the installation's own)

Relative paths are the file's folder's. A typo is a ConfigError naming the key, as for the
server's and the gates' configs; a secret file that cannot be read is one too, at start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_config.errors import ConfigError, Problem, problems_from_validation
from firmware_config.loader import read_config_file
from server.alerts.delivery import RecipientRoutes, Route, SmtpSender, WebhookSender
from server.alerts.rules import AlertRules


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookRoute(_Section):
    url: str = Field(min_length=1)
    secret_file: Path
    sites: list[str] | None = None


class MailRoute(_Section):
    host: str = Field(min_length=1)
    port: int = Field(587, gt=0, lt=65536)
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    starttls: bool = True
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    sites: list[str] | None = None


class ManagerMail(_Section):
    host: str = Field(min_length=1)
    port: int = Field(587, gt=0, lt=65536)
    sender: str = Field(min_length=3)
    starttls: bool = True
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    admins: bool = False


class AlertConfig(_Section):
    every: float = Field(30.0, ge=1, description="seconds between looks")
    clear_after: float = Field(
        120.0, ge=0, description="seconds a problem is gone before it clears"
    )
    rules: AlertRules = Field(default_factory=AlertRules)
    webhook: list[WebhookRoute] = Field(default_factory=list)
    mail: list[MailRoute] = Field(default_factory=list)
    managers: ManagerMail | None = None  # None: only the routes above


def load_alert_config(path: Path) -> AlertConfig:
    raw = read_config_file(path)
    try:
        return AlertConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(
            problems_from_validation(error, AlertConfig, lambda _: str(path))
        ) from None


def routes_of(config: AlertConfig, base: Path) -> list[Route]:
    """The routes the config names, their secrets read now (ConfigError if they cannot be)."""
    routes: list[Route] = []
    for hook in config.webhook:
        secret = _secret(base / hook.secret_file, "webhook.secret_file")
        try:
            sender = WebhookSender(hook.url, secret.encode("utf-8"))
        except ValueError as exc:
            raise ConfigError([Problem(str(base), str(exc), "webhook.url")]) from None
        routes.append(Route(sender, _sites(hook.sites)))
    for mail in config.mail:
        password = (
            _secret(base / mail.password_file, "mail.password_file")
            if mail.password_file is not None
            else None
        )
        sender_ = SmtpSender(
            mail.host,
            mail.port,
            mail.sender,
            tuple(mail.to),
            starttls=mail.starttls,
            ca_file=base / mail.ca_file if mail.ca_file is not None else None,
            username=mail.username,
            password=password,
        )
        routes.append(Route(sender_, _sites(mail.sites)))
    return routes


def manager_routes_of(
    config: AlertConfig,
    base: Path,
    recipients: Callable[[bool], dict[str, frozenset[str] | None]],
) -> RecipientRoutes | None:
    """The managers' routes ([managers]), or None; `recipients(admins)` reads the accounts."""
    managers = config.managers
    if managers is None:
        return None
    password = (
        _secret(base / managers.password_file, "managers.password_file")
        if managers.password_file is not None
        else None
    )

    def sender_to(address: str) -> SmtpSender:
        return SmtpSender(
            managers.host,
            managers.port,
            managers.sender,
            (address,),
            name=f"e-mail to {address}",
            starttls=managers.starttls,
            ca_file=base / managers.ca_file if managers.ca_file is not None else None,
            username=managers.username,
            password=password,
        )

    return RecipientRoutes(lambda: recipients(managers.admins), sender_to)


def _secret(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot be read: {exc.strerror}", key)]) from None


def _sites(sites: list[str] | None) -> frozenset[str] | None:
    return frozenset(sites) if sites is not None else None
