"""The server's config file (`gatescan server --config server.toml`, `gatescan collector` too):
the same settings as the command's flags, typed, so a typo is an error naming the key.

    load_server_config(path) -> ServerConfig          or ConfigError listing every problem
    ServerConfig.flag_values() -> {"broker": ..., ...}  what the file sets, by the flags' names

Each key is a flag of `gatescan server` without its dashes (`site_timezone` is
`--site-timezone`); the broker's are under [mqtt] (`client` is `--mqtt-client`). A key the file
leaves out keeps the flag's default, and a flag given on the command line beats the file. Relative
paths (password_file, ca_file, cert_file, key_file, a SQLite db) are relative to the file's
folder, so an installation's folder can move as a whole. The broker password is never in the
file: `password_file` names the file that holds it ($GATESCAN_MQTT_PASSWORD and the systemd
credential mqtt_password still come first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from firmware_config.errors import ConfigError, problems_from_validation
from firmware_config.loader import read_config_file
from protocol.broker_url import BrokerUrlError, parse_broker_url
from server.checkin.limits import DAILY_CAP, PER_ADDRESS_PER_MIN, PER_PHONE_PER_MIN
from server.checkin.site_form import SiteCheckin
from server.locations.urls import check_public_url

_SQLITE = "sqlite:///"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _broker_url(url: str) -> str:
    try:
        parse_broker_url(url)
    except BrokerUrlError as error:
        raise ValueError(str(error)) from None
    return url


def _tls_files_need_mqtts(section: BaseModel, broker: str | None) -> None:
    """A section naming TLS files (ca_file, cert_file, key_file) needs an mqtts:// broker."""
    named = [key for key in ("ca_file", "cert_file", "key_file") if getattr(section, key)]
    if named and broker is not None and not parse_broker_url(broker).tls:
        raise PydanticCustomError(
            "tls_without_mqtts",
            "{field} is set but the broker is not mqtts:// (no TLS); write mqtts://host:port",
            {"field": named[0]},
        )


class ServerMqtt(_Section):
    """[mqtt]: how the collector reaches the broker. None: the flag's default."""

    broker: str | None = Field(None, description="--broker: mqtt://host:port or mqtts://...")
    username: str | None = Field(None, description="--username: the broker user ('' anonymous).")
    password_file: Path | None = Field(None, description="--password-file: the broker password.")
    client_id: str | None = Field(None, min_length=1, description="--client-id.")
    ca_file: Path | None = Field(None, description="--ca-file: the CA of the broker's cert.")
    cert_file: Path | None = Field(None, description="--cert-file: a client certificate.")
    key_file: Path | None = Field(None, description="--key-file: its key, if not in cert_file.")
    client: Literal["tuned", "stock"] | None = Field(None, description="--mqtt-client.")
    share_group: str | None = Field(
        None, description="--share-group: the events' shared subscription ('' none)."
    )
    session_expiry: int | None = Field(
        None, ge=0, description="--session-expiry: seconds the broker keeps the session."
    )
    publish_policy: bool | None = Field(
        None, description="--publish-policy: this collector publishes the sites' policies."
    )
    admin_username: str | None = Field(
        None, min_length=1, description="--admin-username: the dynamic security admin."
    )
    admin_password_file: Path | None = Field(
        None, description="--admin-password-file: that admin's password."
    )

    @field_validator("broker")
    @classmethod
    def _is_broker_url(cls, url: str | None) -> str | None:
        return url if url is None else _broker_url(url)

    @model_validator(mode="after")
    def _tls_files_need_mqtts(self) -> ServerMqtt:
        _tls_files_need_mqtts(self, self.broker)
        return self


class ServerHomeAssistant(_Section):
    """[home_assistant]: publish the gates to Home Assistant by MQTT discovery (opt-in: without
    the section nothing is published). Its broker is usually Home Assistant's own."""

    broker: str = Field(description="mqtt://host:port or mqtts://...: Home Assistant's broker.")
    username: str | None = Field(None, description="the broker user (none: anonymous).")
    password_file: Path | None = Field(None, description="the file holding its password.")
    client_id: str = Field("gatescan-home-assistant", min_length=1, description="client id.")
    ca_file: Path | None = Field(None, description="the CA of that broker's cert (mqtts).")
    cert_file: Path | None = Field(None, description="a client certificate.")
    key_file: Path | None = Field(None, description="its key, if not in cert_file.")
    discovery_prefix: str = Field(
        "homeassistant",
        pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$",
        description="Home Assistant's discovery prefix.",
    )
    state_prefix: str = Field(
        "gatescan/ha",
        pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$",
        description="where the gates' states go (gatescan's own topics).",
    )
    every: float = Field(5.0, gt=0, le=3600, description="seconds between two looks.")

    @field_validator("broker")
    @classmethod
    def _is_broker_url(cls, url: str) -> str:
        return _broker_url(url)

    @model_validator(mode="after")
    def _tls_files_need_mqtts(self) -> ServerHomeAssistant:
        _tls_files_need_mqtts(self, self.broker)
        if self.discovery_prefix == self.state_prefix.split("/")[0]:
            raise PydanticCustomError(
                "state_under_discovery",
                "state_prefix must not be under discovery_prefix: HA reads configs there",
                {},
            )
        return self


class ServerCheckin(_Section):
    """[checkin]: the self check-in page's limits (None: the default) and, under
    [checkin.sites.SITE], each site's consent text and questions (server/checkin/site_form.py)."""

    per_address_per_min: int | None = Field(
        None,
        ge=1,
        description=f"check-in attempts per client address a minute ({PER_ADDRESS_PER_MIN})",
    )
    per_phone_per_min: int | None = Field(
        None,
        ge=1,
        description=f"check-ins per phone, location and direction a minute ({PER_PHONE_PER_MIN})",
    )
    daily_cap: int | None = Field(
        None, ge=1, description=f"check-ins per location a local day ({DAILY_CAP}); the alert's too"
    )
    sites: dict[str, SiteCheckin] = Field(default_factory=dict, description="per site: the page")

    @field_validator("sites")
    @classmethod
    def _site_names(cls, sites: dict[str, SiteCheckin]) -> dict[str, SiteCheckin]:
        for name in sites:
            if not name.strip() or name != name.strip():
                raise ValueError(f"{name!r} is not a site name (e.g. [checkin.sites.hq])")
        return sites

    def web_settings(self) -> dict[str, Any]:
        """What it sets of the dashboard's settings (WebSettings' names)."""
        values: dict[str, Any] = {
            "checkin_per_address_per_min": self.per_address_per_min,
            "checkin_per_phone_per_min": self.per_phone_per_min,
            "checkin_daily_cap": self.daily_cap,
            "checkin_sites": self.sites,
        }
        return {key: value for key, value in values.items() if value is not None}


class ServerConfig(_Section):
    """The whole file. Keys left out keep the flags' defaults."""

    db: str | None = Field(None, min_length=1, description="--db: SQLAlchemy URL or SQLite file.")
    listen: str | None = Field(None, description="--listen: HOST:PORT of the dashboard.")
    site_timezone: str | None = Field(None, description="--site-timezone, e.g. Asia/Ho_Chi_Minh.")
    language: Literal["vi", "en"] | None = Field(None, description="--language.")
    offline_after: float | None = Field(None, gt=0, description="--offline-after, seconds.")
    tracing_window: int | None = Field(None, gt=0, description="--tracing-window, minutes.")
    session_idle: float | None = Field(None, gt=0, description="--session-idle, seconds.")
    retention_days: int | None = Field(None, ge=0, description="--retention-days; 0: keep all.")
    secure_cookies: bool | None = Field(None, description="--secure-cookies (behind HTTPS).")
    enrol_listen: str | None = Field(None, description="--enrol-listen: HOST:PORT, HTTPS.")
    enrol_cert_file: Path | None = Field(None, description="--enrol-cert-file.")
    enrol_key_file: Path | None = Field(None, description="--enrol-key-file.")
    enrol_url: str | None = Field(None, description="--enrol-url: https://HOST:PORT for gates.")
    gate_broker: str | None = Field(None, description="--gate-broker: mqtts://HOST:PORT.")
    token_hours: float | None = Field(None, gt=0, description="--token-hours: a token's life.")
    alerts: Path | None = Field(None, description="--alerts: alerts.toml (webhook, e-mail).")
    releases: Path | None = Field(None, description="--releases: the signed release bundles.")
    releases_url: str | None = Field(None, description="--releases-url: where gates fetch them.")
    public_url: str | None = Field(
        None, description="--public-url: where phones reach the check-in page (the posters' QR)."
    )
    mqtt: ServerMqtt = Field(default_factory=ServerMqtt)
    home_assistant: ServerHomeAssistant | None = None
    checkin: ServerCheckin = Field(default_factory=ServerCheckin)

    @field_validator("enrol_url")
    @classmethod
    def _is_https(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith("https://"):
            raise ValueError(f"expected https://HOST:PORT, got {url!r}")
        return url

    @field_validator("public_url")
    @classmethod
    def _is_public_url(cls, url: str | None) -> str | None:
        return None if url is None else check_public_url(url)

    @field_validator("gate_broker")
    @classmethod
    def _is_mqtts(cls, url: str | None) -> str | None:
        if url is not None:
            try:
                tls = parse_broker_url(url).tls
            except BrokerUrlError as error:
                raise ValueError(str(error)) from None
            if not tls:
                raise ValueError(f"gates reach the broker over TLS: mqtts://, not {url!r}")
        return url

    @field_validator("listen", "enrol_listen")
    @classmethod
    def _is_host_and_port(cls, listen: str | None) -> str | None:
        if listen is not None:
            _, sep, port = listen.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:8080, got {listen!r}")
        return listen

    def flag_values(self) -> dict[str, Any]:
        """What the file sets, by the flags' argparse names (`--mqtt-client` is mqtt_client)."""
        values = {
            key: value
            for key, value in self
            if key not in ("mqtt", "home_assistant", "checkin") and value is not None
        }
        for key, value in self.mqtt:
            if value is not None:
                values["mqtt_client" if key == "client" else key] = value
        return values


def load_server_config(path: Path, *, folder: Path | None = None) -> ServerConfig:
    """The server's config file, relative paths anchored at its folder (or at `folder`: where a
    restore is about to put it). Raises ConfigError with one line per problem
    (`server.toml: mqtt.ca_fle: unknown key; did you mean 'ca_file'?`)."""
    raw = read_config_file(path)
    try:
        config = ServerConfig.model_validate(raw)
    except ValidationError as error:
        problems = problems_from_validation(error, ServerConfig, lambda _keys: str(path))
        raise ConfigError(problems) from None
    return _anchored(config, (folder or path.parent).absolute())


def _anchored(config: ServerConfig, base: Path) -> ServerConfig:
    mqtt_paths = {
        key: base / value
        for key in ("password_file", "ca_file", "cert_file", "key_file", "admin_password_file")
        if isinstance(value := getattr(config.mqtt, key), Path) and not value.is_absolute()
    }
    update: dict[str, Any] = {"mqtt": config.mqtt.model_copy(update=mqtt_paths)}
    if config.home_assistant is not None:
        ha = config.home_assistant
        ha_paths = {
            key: base / value
            for key in ("password_file", "ca_file", "cert_file", "key_file")
            if isinstance(value := getattr(ha, key), Path) and not value.is_absolute()
        }
        update["home_assistant"] = ha.model_copy(update=ha_paths)
    for key in ("enrol_cert_file", "enrol_key_file", "alerts", "releases"):
        value = getattr(config, key)
        if isinstance(value, Path) and not value.is_absolute():
            update[key] = base / value
    if config.db is not None:
        update["db"] = _anchored_db(config.db, base)
    return config.model_copy(update=update)


def _anchored_db(db: str, base: Path) -> str:
    """A relative SQLite file (a path, or sqlite:///name.db) is relative to the file's folder."""
    if db.startswith(_SQLITE):
        name = db.removeprefix(_SQLITE)
        if name and name != ":memory:" and not Path(name).is_absolute():
            return _SQLITE + str(base / name)
        return db
    if "://" in db or Path(db).is_absolute():
        return db
    return str(base / db)
