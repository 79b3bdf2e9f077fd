"""The shipped HTTPS proxy (deploy/proxy/Caddyfile), read by Caddy's own Caddyfile adapter.

`caddy adapt` parses the file as `caddy run` would and prints the JSON config it stands for, with
a warning for anything odd (an unformatted file, a header Caddy sets anyway); it loads no
certificate and asks no CA, so it runs offline. The test reads that JSON: the dashboard behind
it is the server unit's --listen, HSTS is sent, and the proxy trusts no X-Forwarded-* a client
sends (no trusted_proxies, no header of its own), so the server's view of the client address is
the address that connected to Caddy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.support.paths import DEPLOY
from tests.support.units import SERVER_UNIT, exec_start, option, read_unit

CADDYFILE = DEPLOY / "proxy" / "Caddyfile"
A_YEAR = 365 * 24 * 3600


def adapted() -> dict[str, Any]:
    caddy = shutil.which("caddy")
    assert caddy, "caddy is missing: run deploy/dev/bootstrap.sh (apt package caddy)"
    done = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # Caddy's warnings
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def handlers(node: object) -> Iterator[dict[str, Any]]:
    """Every handler in the config, however deeply routes and subroutes nest them."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for value in node.values():
            yield from handlers(value)
    elif isinstance(node, list):
        for value in node:
            yield from handlers(value)


def test_the_proxy_serves_https_only_in_front_of_the_server_units_listener() -> None:
    config = adapted()
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]  # and Caddy redirects http:// to it by itself
    (proxy,) = (h for h in handlers(config) if h["handler"] == "reverse_proxy")
    listen = option(exec_start(read_unit(SERVER_UNIT)), "--listen")
    assert proxy["upstreams"] == [{"dial": listen}]


def test_the_proxy_sends_hsts_for_a_year() -> None:
    (headers,) = (h for h in handlers(adapted()) if h["handler"] == "headers")
    (hsts,) = headers["response"]["set"]["Strict-Transport-Security"]
    assert int(hsts.removeprefix("max-age=")) >= A_YEAR


def test_the_proxy_trusts_no_forwarded_header_a_client_sends() -> None:
    """Caddy then sets X-Forwarded-For to the connecting address and drops the client's."""
    (proxy,) = (h for h in handlers(adapted()) if h["handler"] == "reverse_proxy")
    assert "trusted_proxies" not in proxy
    assert "headers" not in proxy
