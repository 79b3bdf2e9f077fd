"""`gatescan doctor`: every check of a gate in order, each under its own time bound.

    findings = diagnose(Path("/etc/gatescan/gate.toml"), data_dir=None)
    exit_status(findings)   0: every line OK or WARN; 1: a FAIL

The gate is checked as its agent would run: the config with the enrolled identity laid over it
(device/app.py: with_identity). A config that does not load is a FAIL, and the checks go on with
what can be used of it (its reporting part: who the gate is, its broker, its data dir), so a
typo in [camera] still lets the broker be checked; the camera, decoder and pin checks need the
whole config and say so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.app import broker_user, default_pin_factory, is_raspberry_pi, with_identity
from device.diagnosis.broker import BrokerTarget, check_dns, check_mqtt, check_tcp, check_tls
from device.diagnosis.findings import Finding, Level, bounded, fail, ok, warn
from device.diagnosis.gate import (
    AgentState,
    agent_state,
    check_agent_link,
    check_camera,
    check_clock,
    check_configured_credentials,
    check_decoders,
    check_disk,
    check_gpio,
    check_journal,
    read_identity,
)
from device.enrolment.identity import StoredIdentity
from device.site_policy.files import load_policy, policy_folder
from device.system.clock import TIMESYNCD_FLAG, kernel_clock_state
from device.verdict.policy import access_problem
from firmware_config.errors import ConfigError
from firmware_config.loader import ConfigOverrides, load_config, load_reporting_part
from firmware_config.schema import GateConfig
from protocol.broker_tls import client_tls_context
from protocol.broker_url import parse_broker_url

DEFAULT_CONFIG = Path("/etc/gatescan/gate.toml")  # the agent's unit runs with it
EXIT_HEALTHY, EXIT_FAILED = 0, 1

# Each check's bound, in seconds: the doctor as a whole ends within their sum (about 45 s) even
# when everything hangs, and within seconds for an unreachable broker.
BOUNDS: Mapping[str, float] = {
    "config": 5.0,
    "identity": 3.0,
    "dns": 4.0,
    "tcp": 4.0,
    "tls": 7.0,
    "mqtt": 7.0,
    "clock": 2.0,
    "camera": 12.0,
    "decoders": 5.0,
    "gpio": 5.0,
    "disk": 3.0,
    "journal": 5.0,
}
CHECKS = tuple(BOUNDS)


@dataclass(frozen=True)
class Surroundings:
    """What stands in for the system in tests: the pins, the clock's sync sources, the
    environment (the MQTT password's homes)."""

    pin_factory: Any = None
    on_a_pi: Callable[[], bool] = is_raspberry_pi
    timesyncd_flag: Path = TIMESYNCD_FLAG
    kernel_state: Callable[[], int | None] = kernel_clock_state
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def diagnose(
    config_path: Path | None,
    data_dir: Path | None = None,
    surroundings: Surroundings | None = None,
) -> list[Finding]:
    """One finding per check of CHECKS, in that order."""
    around = surroundings or Surroundings()
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    overrides = ConfigOverrides(data_dir=data_dir)
    loaded: list[GateConfig | None] = [None]

    def config_check() -> Finding:
        finding, loaded[0] = _check_config(config_path, overrides, around.env)
        return finding

    findings = [bounded("config", config_check, BOUNDS["config"])]
    whole = loaded[0]
    usable = whole or _reporting_part(config_path, overrides, around.env, data_dir)
    folder = Path(usable.data_dir)

    held: list[StoredIdentity | None] = [None]

    def identity_check() -> Finding:
        finding, held[0] = read_identity(folder)
        return finding or check_configured_credentials(usable)

    findings.append(bounded("identity", identity_check, BOUNDS["identity"]))
    effective = with_identity(usable, held[0]) if held[0] is not None else usable
    agent = agent_state(folder)
    clock = check_clock(around.timesyncd_flag, around.kernel_state)
    findings += _broker_checks(effective, held[0] is not None, agent, clock.level is Level.OK)
    findings.append(clock)
    findings += _device_checks(whole, agent, around)
    findings.append(bounded("disk", lambda: check_disk(folder), BOUNDS["disk"]))
    findings.append(bounded("journal", lambda: check_journal(folder), BOUNDS["journal"]))
    return findings


def _check_config(
    path: Path | None, overrides: ConfigOverrides, env: Mapping[str, str]
) -> tuple[Finding, GateConfig | None]:
    where = str(path) if path is not None else "no config file (the defaults)"
    try:
        config = load_config(path, overrides=overrides, env=env)
    except ConfigError as error:
        count = len(error.problems)
        listed = "; ".join(str(problem) for problem in error.problems)
        return (
            fail(
                "config",
                f"{count} problem{'s' if count != 1 else ''}: {listed}",
                "correct the file where each problem says (`gatescan config check FILE` lists "
                "them one a line); the agent shows the config_error light until then",
            ),
            None,
        )
    found = (
        f"{where} loads: {config.policy.mode} mode, {config.camera.type} camera, decoder "
        f"{config.decoder.backend}"
    )
    refusal = _access_refusal(config)
    if refusal is not None:
        return (
            warn(
                "config",
                f"{found}; but {refusal}",
                "the site's keys and lists come from the server (`gatescan key rotate`, "
                '`gatescan list add allow`), or run the gate with policy.mode = "log"',
            ),
            config,
        )
    return ok("config", found), config


def _access_refusal(config: GateConfig) -> str | None:
    if config.policy.mode != "access" or not config.site_id:
        return None
    held = load_policy(policy_folder(Path(config.data_dir), config.site_id), config.site_id)
    return access_problem(config.policy.mode, held)


def _reporting_part(
    path: Path | None, overrides: ConfigOverrides, env: Mapping[str, str], data_dir: Path | None
) -> GateConfig:
    """What can be used of a config that does not load: its reporting sections, else the
    defaults (with --data-dir)."""
    try:
        part = load_reporting_part(path, overrides=overrides, env=env)
    except OSError:
        part = None
    if part is not None:
        return part
    return GateConfig.model_validate({"data_dir": data_dir} if data_dir is not None else {})


def broker_target(config: GateConfig, enrolled: bool) -> BrokerTarget | None:
    """The broker as the agent reaches it; None when the gate has none (setup mode)."""
    if config.mqtt.broker is None:
        return None
    address = parse_broker_url(config.mqtt.broker)
    password = config.mqtt.password()
    tls = config.mqtt.tls
    if enrolled:
        ca_source = f"the enrolled identity's CA ({tls.ca_file})"
    elif tls.ca_file is not None:
        ca_source = f"mqtt.ca_file ({tls.ca_file})"
    else:
        ca_source = "the system's CA store"
    return BrokerTarget(
        url=config.mqtt.broker,
        host=address.host,
        port=address.port,
        tls=address.tls,
        device_id=config.device_id,
        username=broker_user(config, password),
        password=password,
        context=lambda: client_tls_context(tls),
        ca_source=ca_source,
        enrolled=enrolled,
    )


def _broker_checks(
    config: GateConfig, enrolled: bool, agent: AgentState, clock_synced: bool
) -> list[Finding]:
    try:
        target = broker_target(config, enrolled)
    except (OSError, ValueError) as error:  # a password file gone since the config loaded
        return [
            fail(name, f"not checked: {error}", "see the identity line")
            for name in ("dns", "tcp", "tls", "mqtt")
        ]
    if target is None:
        return [
            warn(name, "not checked: no broker (setup mode)", "see the identity line")
            for name in ("dns", "tcp", "tls", "mqtt")
        ]
    findings = [bounded("dns", lambda: check_dns(target), BOUNDS["dns"])]
    if findings[-1].level is Level.FAIL:
        return findings + [
            fail(name, "not checked: the broker's name does not resolve", "see the dns line")
            for name in ("tcp", "tls", "mqtt")
        ]
    findings.append(bounded("tcp", lambda: check_tcp(target), BOUNDS["tcp"]))
    if findings[-1].level is Level.FAIL:
        return findings + [
            fail(name, "not checked: no connection to the broker", "see the tcp line")
            for name in ("tls", "mqtt")
        ]
    tls = bounded("tls", lambda: check_tls(target, clock_synced=clock_synced), BOUNDS["tls"])
    findings.append(tls)
    if tls.level is Level.FAIL:
        return [*findings, fail("mqtt", "not checked: no TLS connection", "see the tls line")]
    if agent.running:
        findings.append(check_agent_link(agent))
    else:
        findings.append(bounded("mqtt", lambda: check_mqtt(target), BOUNDS["mqtt"]))
    return findings


def _device_checks(
    whole: GateConfig | None, agent: AgentState, around: Surroundings
) -> list[Finding]:
    if whole is None:
        return [
            fail(name, "not checked: the config does not load", "see the config line")
            for name in ("camera", "decoders", "gpio")
        ]
    config = whole

    def gpio() -> Finding:
        on_a_pi = around.on_a_pi()
        factory = around.pin_factory
        if factory is None and not agent.running:
            factory = default_pin_factory()
        return check_gpio(config, agent, factory, on_a_pi)

    return [
        bounded("camera", lambda: check_camera(config, agent), BOUNDS["camera"]),
        bounded("decoders", lambda: check_decoders(config), BOUNDS["decoders"]),
        bounded("gpio", gpio, BOUNDS["gpio"]),
    ]


def exit_status(findings: Sequence[Finding]) -> int:
    return EXIT_FAILED if any(f.level is Level.FAIL for f in findings) else EXIT_HEALTHY


def as_text(findings: Sequence[Finding]) -> str:
    return "".join(finding.line() + "\n" for finding in findings)


def as_json(findings: Sequence[Finding]) -> str:
    healthy = exit_status(findings) == EXIT_HEALTHY
    return json.dumps({"ok": healthy, "checks": [f.as_json() for f in findings]}, indent=2)
