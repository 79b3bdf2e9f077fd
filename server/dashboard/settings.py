"""The dashboard's settings: one typed value, built by the CLI from its flags."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    login_failures_per_user: int = Field(5, ge=1, description="Failed logins per name per window.")
    login_failures_per_ip: int = Field(20, ge=1, description="Failed logins per client per window.")
    login_window_s: float = Field(900, gt=0, description="The login rate limit's window.")
    # scrypt takes 32 MiB a hash: a login storm must not run one per worker thread at once
    # (server/accounts/passwords.py). Over these, a login is answered 503 with Retry-After.
    password_hashes_at_once: int = Field(2, ge=1, le=64, description="Logins checked at once.")
    password_hashes_waiting: int = Field(
        8, ge=0, le=64, description="Logins that may wait for a turn; more are refused at once."
    )
    password_hash_wait_s: float = Field(
        3.0, ge=0, le=60, description="How long a login waits for a turn before a 503."
    )

    @field_validator("site_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site_timezone)

    @property
    def session_idle(self) -> timedelta:
        return timedelta(seconds=self.session_idle_s)

    @property
    def session_max_age(self) -> timedelta:
        return timedelta(seconds=self.session_max_age_s)
