"""The dashboard's settings: one typed value, built by the CLI from its flags."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.checkin.limits import DAILY_CAP, PER_ADDRESS_PER_MIN, PER_PHONE_PER_MIN
from server.checkin.site_form import SiteCheckin
from server.locations.urls import check_public_url


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    site_timezone: str = Field("Asia/Ho_Chi_Minh", description="IANA zone for dates and 'today'.")
    default_language: Literal["vi", "en"] = Field("vi", description="For users who chose none.")
    offline_after_s: float = Field(
        120, gt=0, description="A gate offline longer than this is flagged on the fleet page."
    )
    tracing_window_min: int = Field(60, ge=1, le=1440, description="Default ±N for tracing.")
    retention_days: int | None = Field(
        None, ge=1, description="Entries older than this are purged; None keeps them."
    )
    session_idle_s: float = Field(1800, gt=0, description="A session unused this long ends.")
    session_max_age_s: float = Field(12 * 3600, gt=0, description="A session ends this late.")
    secure_cookies: bool = Field(False, description="Send cookies over HTTPS only (behind TLS).")
    # The client address is the socket's peer, unless the peer is one of these reverse proxies:
    # only then is X-Forwarded-For read (its right-most address that is not one of them).
    forwarded_allow_ips: tuple[str, ...] = Field(
        (), description="Proxies (IPs or CIDR networks) whose X-Forwarded-For is believed."
    )
    # The login throttle (server/dashboard/login/throttle.py): per name a delay growing with
    # its failures, per client address a limit in a window; over either, 429 with Retry-After.
    login_failures_per_user: int = Field(
        5, ge=0, description="Failed logins for a name before each further one waits."
    )
    login_delay_first_s: float = Field(1.0, gt=0, description="The first of those waits.")
    login_delay_max_s: float = Field(
        30.0, gt=0, description="The longest wait: each failure doubles it, up to this."
    )
    login_failures_per_ip: int = Field(20, ge=1, description="Failed logins per client per window.")
    login_window_s: float = Field(
        900, gt=0, description="The address limit's window; a name's failures last as long."
    )
    # A login waits for a turn to check its password as a coroutine, not a worker thread
    # (server/dashboard/login/turns.py): the queue can be deep and the wait long.
    login_checks_waiting: int = Field(
        64, ge=0, le=1024, description="Logins that may wait for a turn; more get 503 at once."
    )
    login_check_wait_s: float = Field(
        30.0, ge=0, le=300, description="How long a login waits for a turn before a 503."
    )
    # scrypt takes 32 MiB a hash: a login storm must not run one per worker thread at once
    # (server/accounts/passwords.py). Over these, a password change is answered 503.
    password_hashes_at_once: int = Field(
        2, ge=1, le=64, description="Password hashes (logins, changes) run at once."
    )
    password_hashes_waiting: int = Field(
        8, ge=0, le=64, description="Other hashes that may wait for a turn, each in a thread."
    )
    password_hash_wait_s: float = Field(
        3.0, ge=0, le=60, description="How long such a hash waits for a turn before a 503."
    )

    # The self check-in page's limits (server/checkin/; issue 18): over one, 429.
    checkin_per_address_per_min: int = Field(
        PER_ADDRESS_PER_MIN, ge=1, description="Check-in attempts per client address per minute."
    )
    checkin_per_phone_per_min: int = Field(
        PER_PHONE_PER_MIN,
        ge=1,
        description="Check-ins per phone number, location and direction per minute.",
    )
    checkin_daily_cap: int = Field(
        DAILY_CAP, ge=1, description="Check-ins (in and out) per location per local day."
    )
    # Each site's consent text and questions (server.toml's [checkin.sites.SITE]); a site not
    # named here keeps the page's defaults.
    checkin_sites: dict[str, SiteCheckin] = Field(
        default_factory=dict, description="Per site: the check-in page's consent and questions."
    )

    # Updates from the dashboard (server/dashboard/rollout/): the signed bundles on offer, and
    # the address gates fetch them at (`RELEASES_URL/gatescan-V.release.tar`).
    releases_dir: Path | None = Field(
        None, description="The folder of signed release bundles served at /releases/."
    )
    releases_url: str | None = Field(
        None, description="Where gates reach /releases/, e.g. https://dashboard.example/releases."
    )

    # Self check-in (issue 18): where a visitor's phone reaches this server; a location's poster
    # holds PUBLIC_URL/c/TOKEN (server/locations/urls.py). None: no posters can be made.
    public_url: str | None = Field(
        None,
        description="The server's public address for check-in posters, e.g. https://checkin.example.vn.",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else check_public_url(value)

    @field_validator("releases_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"releases_url: an https:// (or http://) address, not {value!r}")
        return value

    @field_validator("site_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name") from None
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(trusted_network(item)) for item in value)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site_timezone)

    @property
    def session_idle(self) -> timedelta:
        return timedelta(seconds=self.session_idle_s)

    @property
    def session_max_age(self) -> timedelta:
        return timedelta(seconds=self.session_max_age_s)


def trusted_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP address or a CIDR network, as `--forwarded-allow-ips` names a proxy; a name, "*"
    or a network with host bits set (10.0.0.5/8: which was meant?) is a ValueError."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an IP address or a CIDR network") from None
