"""How the collector logs in to the broker: shared by `gatescan collector` and `gatescan server`."""

from __future__ import annotations

import logging
import os


class MqttLoginError(ValueError):
    """A broker URL or a password file a technician must fix (the message says which)."""


def collector_login(broker_url: str, username: str) -> tuple[str | None, str | None]:
    """Check the broker URL and find the MQTT password ($GATESCAN_MQTT_PASSWORD or the systemd
    credential `mqtt_password`): (username, password), None for each not given. Raises
    MqttLoginError with a line for the technician."""
    from firmware_config.loader import PasswordFileError, find_mqtt_password
    from protocol.broker_url import BrokerUrlError, parse_broker_url

    try:
        parse_broker_url(broker_url)
        password = find_mqtt_password(os.environ)
    except (BrokerUrlError, PasswordFileError) as exc:
        raise MqttLoginError(str(exc)) from exc
    user = username or None
    if user is not None and password is None:
        # Worth saying: a site's broker refuses this with no more than "Not authorized".
        logging.getLogger("gatescan.collector").warning(
            "no MQTT password in $GATESCAN_MQTT_PASSWORD or the systemd credential "
            "mqtt_password; logging in as %r without one",
            user,
        )
    return user, password
