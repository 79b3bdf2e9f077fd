"""`gatescan agent`: run a gate (camera, decoder, indicator, journal, uplink) from its config;
`gatescan doctor`, which checks one (device/diagnosis/doctor.py; docs/operations.md);
`gatescan reset`, its factory reset; and `gatescan update`, which replaces its release
(device/update/updater.py; run as root); and `gatescan preview`, the aim-and-focus view
(device/preview/): from the running agent through its socket, else from the camera itself.

no broker and no identity in the data dir  -> setup mode: wait for the enrolment card, enrol,
                                              then run as the identity granted (no restart)
an identity in the data dir                -> run as it (it wins over the config's broker,
                                              user, password, CA and device id)
a broker given (--broker, mqtt.broker)     -> run as configured (demo, tests, benches)
a config that cannot be used               -> the config_error light, the watchdog pinged,
                                              the file read again until it loads; or exit 2
                                              (--on-bad-config exit; the default off systemd)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatescan.options import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Commands, stop_on_signals

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from device.app import Agent
    from firmware_config.errors import ConfigError
    from firmware_config.loader import ConfigOverrides
    from firmware_config.schema import GateConfig
    from protocol.preview.wire import FrameHeader

log = logging.getLogger("gatescan.agent")


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    agent = commands.add_parser("agent", help="run a gate: camera, decoder, indicator, uplink")
    agent.add_argument("--config", type=Path, help="gate config file (.toml, .yaml)")
    agent.add_argument(
        "--source",
        help="picamera2 | /dev/video0 | 0 | rtsp://... | FILE | replay:DIR (overrides the config)",
    )
    agent.add_argument(
        "--broker",
        help="mqtt://host:port or mqtts://host:port; none (and no mqtt.broker): the broker of "
        "the gate's enrolment, or setup mode until it has enrolled",
    )
    agent.add_argument("--device-id", help="this gate's id (a topic level and broker user)")
    agent.add_argument("--data-dir", type=Path, help="where the journal and identity live")
    agent.add_argument(
        "--mode",
        choices=["access", "log"],
        help="policy.mode: access (grant a valid pass or an allow-listed card, deny the rest) "
        "or log (record every entry, stop nobody); overrides the config",
    )
    agent.add_argument(
        "--on-bad-config",
        choices=["auto", "wait", "exit"],
        default="auto",
        help="wait: show the config error light and wait for a fixed file; exit: exit 2; "
        "auto (default): wait under systemd (NOTIFY_SOCKET set), exit elsewhere",
    )
    agent.set_defaults(run=run)
    add_doctor_parser(commands)
    add_selftest_parser(commands)
    add_update_parser(commands)
    add_reset_parser(commands)
    add_preview_parser(commands)


def add_preview_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan preview`: registered here, beside the agent it asks (device/preview/)."""
    preview = commands.add_parser(
        "preview",
        help="aim and focus a gate: its camera's annotated picture and a focus score",
        description="Asks the running agent (it holds the camera) for preview frames through its "
        "socket in the data dir, or, when no agent runs, opens the camera itself. Writes the "
        "latest annotated JPEG to --out (replaced whole) and prints 'focus N (peak M)': turn "
        "the lens until the number peaks. Nothing is kept but the one file you name.",
    )
    add_gate_files_arguments(preview)
    preview.add_argument("--source", help="the camera, over the config's (without an agent)")
    preview.add_argument("--out", type=Path, help="write the latest annotated JPEG here")
    preview.add_argument("--fps", type=float, default=2.0, help="frames a second (at most 4)")
    preview.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)"
    )
    preview.add_argument("--frames", type=int, default=0, help="stop after this many frames")
    preview.set_defaults(run=run_preview)


def add_gate_files_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and --data-dir as the commands run at a gate beside its agent take them
    (doctor, preview, selftest, reset): the agent's own files, found as the agent finds them."""
    parser.add_argument(
        "--config", type=Path, help="the gate's config file (default: /etc/gatescan/gate.toml)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="the agent's data_dir (identity, journal), over the config's"
    )


def gate_config_path(asked: Path | None) -> Path | None:
    """The config file a command at the gate reads: the one asked for, else the agent unit's
    own (device/diagnosis/doctor.py DEFAULT_CONFIG) when it exists, else none (the defaults)."""
    from device.diagnosis.doctor import DEFAULT_CONFIG

    if asked is not None:
        return asked
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def run_preview(args: argparse.Namespace) -> int:
    from device.preview.standalone import show_frames

    stop = stop_on_signals()
    try:
        frames, where = preview_frames(
            args.config, args.data_dir, args.source, fps=args.fps, stop=stop
        )
    except Exception as exc:  # a config, camera or socket problem: one line, not a trace
        print(f"gatescan preview: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"preview from {where}", file=sys.stderr)
    shown = show_frames(
        frames, out=args.out, seconds=args.seconds, count=args.frames, stop=stop, echo=sys.stdout
    )
    return EXIT_OK if shown else EXIT_FAILED


def preview_frames(
    config_path: Path | None,
    data_dir: Path | None,
    source: str | None,
    *,
    fps: float,
    stop: threading.Event,
) -> tuple[Iterator[tuple[FrameHeader, bytes]], str]:
    """The running agent's preview frames through its socket; else the camera's, opened here."""
    from device.app import framing_for, open_source
    from device.decode.backends import make_decoder
    from device.preview.local import agent_frames, socket_path
    from device.preview.standalone import camera_frames
    from firmware_config.loader import ConfigOverrides, load_config

    config_path = gate_config_path(config_path)
    overrides = ConfigOverrides(source=source, data_dir=data_dir)
    config = load_config(config_path, overrides=overrides, env=os.environ)
    path = socket_path(Path(config.data_dir))
    frames = agent_frames(path, fps)
    if frames is not None:
        return frames, f"the running agent ({path})"
    camera = open_source(config)
    framing = framing_for(config.camera)
    decoder = make_decoder(config.decoder.backend)
    return camera_frames(camera, decoder, framing, fps=fps, stop=stop), "the camera (no agent runs)"


def add_selftest_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan selftest gpio`: registered here, beside the agent whose pins it drives
    (device/diagnosis/selftest.py)."""
    selftest = commands.add_parser("selftest", help="test a gate's parts by hand, at the gate")
    parts = selftest.add_subparsers(title="parts", metavar="PART", required=True)
    gpio = parts.add_parser(
        "gpio",
        help="light and sound each output in turn: green, red, buzzer (and the relay if asked)",
        description="Each output in turn, announced as it comes on. Refused while the agent "
        "runs (it holds the pins): stop it, or use the dashboard's self-test. Exit 0 once "
        "played, 1 when refused.",
    )
    add_gate_files_arguments(gpio)
    gpio.add_argument(
        "--include-relay",
        action="store_true",
        help="also energise/release the door relay for 1 s: THE DOOR OPENS",
    )
    gpio.set_defaults(run=run_selftest_gpio)


def run_selftest_gpio(args: argparse.Namespace) -> int:
    from device.diagnosis.selftest import selftest_gpio
    from firmware_config.errors import ConfigError
    from firmware_config.loader import ConfigOverrides, load_config

    path = gate_config_path(args.config)
    try:
        config = load_config(path, overrides=ConfigOverrides(data_dir=args.data_dir))
    except ConfigError as exc:
        print(f"gatescan selftest gpio: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return selftest_gpio(config, include_relay=args.include_relay)


def add_update_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan update`: registered here, beside the agent it replaces (device/update/)."""
    update = commands.add_parser(
        "update",
        help="install a signed release beside the running one, switch, switch back if unhealthy",
        description="Run as root, by gatescan-updater.service or by hand. Exit 0 updated (or "
        "already running it), 1 update_failed (switched back), 2 refused (unsigned, tampered, "
        "wrong key, downgrade, bad input): nothing changed. The outcome is also in "
        "/var/lib/gatescan-updater/result.json.",
    )
    what = update.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", metavar="VERSION", help="the release to run")
    what.add_argument(
        "--from-request",
        action="store_true",
        help="take the agent's request (/var/lib/gatescan/update-request.json): the path unit",
    )
    what.add_argument(
        "--recover", action="store_true", help="only finish an update a crash stopped (at boot)"
    )
    update.add_argument("--from", dest="source", metavar="FILE|URL", help="the signed bundle")
    update.add_argument(
        "--allow-downgrade", action="store_true", help="accept a release older than the running"
    )
    update.add_argument(
        "--health-window",
        type=float,
        default=90.0,
        metavar="S",
        help="seconds the new agent has for READY, a processed frame and the broker (90)",
    )
    update.add_argument("--unit", default="gatescan-agent.service", help="the agent's unit")
    update.add_argument(
        "--root", type=Path, default=Path("/"), help="the tree /opt/gatescan etc. are under (/)"
    )
    update.add_argument(
        "--agent-here",
        metavar="ARGS",
        help="no systemd: run `current/bin/gatescan ARGS` as this updater's child and take its "
        "READY on a notify socket of its own (tests, a bench)",
    )
    update.set_defaults(run=run_update)


def run_update(args: argparse.Namespace) -> int:
    import json
    import shlex

    from device.update.agent_control import AgentControl, ChildAgent, SystemdAgent
    from device.update.failpoints import UpdaterFailpoints
    from device.update.layout import Layout
    from device.update.requests import BadRequest, take_request
    from device.update.updater import FAILED, REFUSED, UpdateBusy, Updater

    try:
        failpoints = UpdaterFailpoints.from_environment(os.environ)
    except ValueError as exc:
        print(f"gatescan update: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    layout = Layout(args.root)
    layout.state.mkdir(parents=True, exist_ok=True)
    control: AgentControl
    if args.agent_here is not None:
        control = ChildAgent(layout.current, shlex.split(args.agent_here), layout.state)
    else:
        control = SystemdAgent(args.unit)
    updater = Updater(layout, control, health_window_s=args.health_window, failpoints=failpoints)
    try:
        if args.recover:
            outcome = updater.recover()
            print(
                "no update to finish"
                if outcome is None
                else json.dumps(outcome.as_record(layout.running_version()))
            )
            return EXIT_OK
        if args.from_request and not layout.request.is_symlink() and not layout.request.exists():
            # At boot (the unit is enabled) or a second trigger: finish a stopped update only.
            recovered = updater.recover()
            print("no update requested" if recovered is None else recovered.reason)
            return EXIT_OK
        if args.from_request:
            try:
                request = take_request(layout.request, layout.agent_data)
            except BadRequest as exc:
                print(f"gatescan update: {exc}", file=sys.stderr)
                return EXIT_BAD_INPUT
            version, source, allow = request.version, request.source, request.allow_downgrade
        else:
            if args.source is None:
                print("gatescan update: --to needs --from FILE|URL", file=sys.stderr)
                return EXIT_BAD_INPUT
            version, source, allow = args.to, args.source, args.allow_downgrade
        outcome = updater.update(version, source, allow_downgrade=allow)
    except UpdateBusy as exc:
        print(f"gatescan update: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        control.close()
    record = outcome.as_record(layout.running_version())
    print(json.dumps(record, sort_keys=True))
    if outcome.outcome == REFUSED:
        print(f"gatescan update: refused: {outcome.reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if outcome.outcome == FAILED:
        print(f"gatescan update: update_failed: {outcome.reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_reset_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan reset`: a factory reset of the gate, registered beside the agent it resets."""
    reset = commands.add_parser(
        "reset",
        help="factory reset: forget the gate's enrolment (setup mode again), its site policy"
        " and its journal (stop the agent first)",
        description="Forget the identity granted at enrolment, the site policy held and (unless"
        " --keep-journal) the journal; the next `gatescan agent` starts in setup mode. Refused"
        " while the agent runs, and while the outbox holds events the server has not"
        " acknowledged unless --discard-unacked names how many.",
    )
    add_gate_files_arguments(reset)
    reset.add_argument(
        "--keep-journal",
        action="store_true",
        help="keep the journal (history and unacknowledged events) for the next enrolment",
    )
    reset.add_argument(
        "--discard-unacked",
        type=int,
        metavar="N",
        help="discard the outbox's N unacknowledged events (N must be their number)",
    )
    reset.set_defaults(run=run_reset)


def run_reset(args: argparse.Namespace) -> int:
    """The factory reset; exit 0 done, 1 the agent runs or a file could not be removed, 2 the
    unacknowledged events were not counted right (nothing changed)."""
    import errno
    import shutil

    from device.app import LAST_TELEMETRY_FILE
    from device.enrolment.identity import IdentityError, forget_identity
    from device.journal.journal import Journal, JournalError
    from device.journal.outbox import OUTBOX_FILE
    from device.site_policy.files import FOLDER as POLICY_FOLDER

    def say(line: str) -> None:
        print(f"gatescan reset: {line}", file=sys.stderr)

    data_dir, broker = _reset_target(args)
    journal_dir = data_dir / "journal"
    journal: Journal | None = None
    unacked = 0
    if (journal_dir / OUTBOX_FILE).is_file():
        try:  # the journal's lock: the agent holds it while it runs, and we hold it now
            journal = Journal(data_dir, retention_days=None)
        except JournalError as exc:
            busy = exc.errno == errno.EBUSY
            say("the agent is running: stop it first (systemctl stop gatescan-agent); nothing"
                " was changed" if busy else f"{exc}; nothing was changed")  # fmt: skip
            return EXIT_FAILED
        unacked = journal.outbox_depth()
    try:
        named = args.discard_unacked if args.discard_unacked is not None or unacked else 0
        if not args.keep_journal and named != unacked:  # nobody discards events by accident
            given = "" if args.discard_unacked is None else f" (not {args.discard_unacked})"
            say(f"the outbox holds {unacked} event(s) the server has not acknowledged{given}:"
                " start the agent with network until they are delivered, or keep them"
                " (--keep-journal), or copy them for the server (gatescan journal export) and"
                f" discard them with --discard-unacked {unacked}; nothing was changed")  # fmt: skip
            return EXIT_BAD_INPUT
        forgot = forget_identity(data_dir)
        if (data_dir / POLICY_FOLDER).exists():  # another site's keys and lists
            shutil.rmtree(data_dir / POLICY_FOLDER)
        (data_dir / LAST_TELEMETRY_FILE).unlink(missing_ok=True)
    except (IdentityError, OSError) as exc:
        say(f"{exc}")
        return EXIT_FAILED
    finally:
        if journal is not None:
            journal.close()
    say("identity removed: the gate enrols again in setup mode" if forgot else "no identity")
    if args.keep_journal:
        say(f"journal kept ({unacked} unacknowledged event(s) in it)")
    elif journal_dir.exists():
        try:
            shutil.rmtree(journal_dir)
        except OSError as exc:
            say(f"cannot remove {journal_dir}: {exc}")
            return EXIT_FAILED
        say(f"journal removed ({unacked} unacknowledged event(s) discarded)")
    if broker:
        say("the config names a broker (mqtt.broker): the agent runs as configured, not in"
            " setup mode, until that line is removed")  # fmt: skip
    return 0


def _reset_target(args: argparse.Namespace) -> tuple[Path, bool]:
    """The data dir to reset (--data-dir, else the config's) and whether the config names a
    broker (then the agent skips setup mode). A config that does not load still has a data dir."""
    from firmware_config.errors import ConfigError
    from firmware_config.loader import load_config
    from firmware_config.schema import DEFAULT_DATA_DIR

    config_path = gate_config_path(args.config)
    data_dir, broker = args.data_dir, False
    if config_path is not None:
        try:
            config = load_config(config_path)
            broker = bool(config.mqtt.broker)
            data_dir = data_dir or Path(config.data_dir)
        except ConfigError:
            pass
    return (data_dir or DEFAULT_DATA_DIR), broker


def add_doctor_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan doctor`: registered here, beside the agent it checks (device/diagnosis/)."""
    doctor = commands.add_parser(
        "doctor",
        help="check a gate: config, identity, broker (DNS, TCP, TLS, MQTT), clock, camera, "
        "decoders, pins, disk, journal",
        description="One line per check, OK|WARN|FAIL NAME: what was found — the fix. Exit 0 "
        "when no check fails, 1 when one does, 2 for a usage error.",
    )
    add_gate_files_arguments(doctor)
    doctor.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    doctor.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from device.diagnosis.doctor import as_json, as_text, diagnose, exit_status

    logging.getLogger().setLevel(logging.ERROR)  # the doctor's lines, not the parts' logs
    findings = diagnose(args.config, args.data_dir)
    sys.stdout.write(as_json(findings) + "\n" if args.json else as_text(findings))
    return exit_status(findings)


def startup_errors() -> tuple[type[BaseException], ...]:
    """What can stop a gate from starting: hardware, files, libraries. Each says what is wrong."""
    from gpiozero import GPIOZeroError

    from device.camera.source import CameraError
    from device.decode.base import DecoderError
    from device.journal.journal import JournalError

    return (CameraError, JournalError, DecoderError, GPIOZeroError, OSError)


def waits_on_bad_config(choice: str, env: Mapping[str, str]) -> bool:
    """The gate's unit is Type=notify, so systemd gives it NOTIFY_SOCKET: there a gate waits (a
    restart would find the same file); a person at a terminal wants the problems and the prompt
    back. Not INVOCATION_ID: every process under any service has it, a CI runner's tests too."""
    if choice != "auto":
        return choice == "wait"
    return bool(env.get("NOTIFY_SOCKET"))


def run(args: argparse.Namespace) -> int:
    from device.system.clock import clock_from_environment
    from device.system.failpoints import Failpoints
    from firmware_config.errors import ConfigError
    from firmware_config.loader import ConfigOverrides, load_config

    try:  # a fault-injection variable mistyped (it names itself): before any I/O
        Failpoints.from_environment(os.environ)
        clock_from_environment(os.environ)
    except ValueError as exc:
        print(f"gatescan agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    overrides = ConfigOverrides(
        source=args.source,
        broker=args.broker,
        device_id=args.device_id,
        data_dir=args.data_dir,
        mode=args.mode,
    )
    stop = stop_on_signals()
    # Until the agent runs (setup mode, a bad config waited on), SIGHUP must not end the process
    # (its default): a bad config is read again every 2 s anyway, and a good one as it starts.
    signal.signal(signal.SIGHUP, lambda signum, frame: log.warning("SIGHUP: not running yet"))

    def load(pushed: Mapping[str, Any] | None = None) -> GateConfig:
        return load_config(args.config, overrides=overrides, pushed=pushed)

    try:
        config = with_kept_push(load(), load)
    except ConfigError as exc:
        if not waits_on_bad_config(args.on_bad_config, os.environ):
            print(f"gatescan agent: bad configuration\n{exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        waited = _wait_for_a_good_config(exc, args, overrides, load, stop)
        if waited is None:
            return 0
        config = with_kept_push(waited, load)
    try:
        return _run_gate(config, args.config, stop, load=load if args.config else None)
    except ValueError as exc:
        print(f"gatescan agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except startup_errors() as exc:
        # systemd restarts the unit; the technician reads one line, not a traceback.
        print(f"gatescan agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _run_gate(
    config: GateConfig,
    config_path: Path | None,
    stop: threading.Event,
    load: Callable[[Mapping[str, Any]], GateConfig] | None = None,
) -> int:
    from device.app import build_agent, build_setup, needs_enrolment, with_identity
    from device.enrolment.identity import load_identity
    from device.system.systemd_notify import SystemdNotifier
    from protocol.enrolment import ENROLMENT_FILE_NAME

    identity = load_identity(Path(config.data_dir))
    if needs_enrolment(config, identity):
        notifier = SystemdNotifier.from_environment()
        code_file = config_path.parent / ENROLMENT_FILE_NAME if config_path else None
        setup = build_setup(config, code_file=code_file, notifier=notifier)
        notifier.ready("setup mode: show the enrolment card")
        try:
            enrolled = setup.run(stop)
        finally:
            setup.close()
            notifier.close()
        if enrolled is None:
            return 0
        log.info(
            "enrolled in %.2f s from the card's reading; starting as %s",
            enrolled.stored_at - enrolled.code_read_at,
            enrolled.identity.grant.device_id,
        )
        identity = enrolled.identity
    if identity is not None:
        config = with_identity(config, identity)
    reread = None
    if load is not None:
        read, held = load, identity

        def reread(pushed: Mapping[str, Any]) -> GateConfig:  # its identity over file and push
            fresh = read(pushed)
            return with_identity(fresh, held) if held is not None else fresh

    agent = build_agent(config, load=reread)
    reload_on_sighup(agent)
    agent.run(stop)
    # A `restart` command: exit 0, and systemd's Restart=always starts the agent again.
    return 0


def with_kept_push(
    config: GateConfig, load: Callable[[Mapping[str, Any]], GateConfig]
) -> GateConfig:
    """The config with the settings last pushed from the dashboard over its file (they are kept
    in its data dir); the file's alone, logged, when the push no longer fits it (a gate always
    starts on a config that loads)."""
    from device.live_config import kept_push
    from firmware_config.errors import ConfigError

    pushed = kept_push(Path(config.data_dir))
    if not pushed:
        return config
    try:
        return load(pushed)
    except ConfigError as exc:
        log.error("the pushed settings do not fit the file, so the file's are used:\n%s", exc)
        return config


def reload_on_sighup(agent: Agent) -> None:
    """SIGHUP: the file and the kept push read again and applied live (as `reload_config`), on a
    thread of its own, so the frame loop the signal interrupts goes on at once."""
    if threading.current_thread() is not threading.main_thread():
        return  # a test's agent: signals reach the main thread only

    def reload() -> None:
        if agent.live is not None:
            outcome = agent.live.reload()
            log.warning("SIGHUP: config %s: %s", outcome.status, outcome.detail)

    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=reload, name="sighup-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, handler)


def _wait_for_a_good_config(
    error: ConfigError,
    args: argparse.Namespace,
    overrides: ConfigOverrides,
    load: Callable[[], GateConfig],
    stop: threading.Event,
) -> GateConfig | None:
    """The config_error state: the light (on the config's own pins when those are usable), the
    watchdog, the `config` fault in the retained status when the broker part is usable."""
    from device.app import build_indicator, build_status_report
    from device.config_error import ConfigErrorState
    from device.system.systemd_notify import SystemdNotifier
    from firmware_config.loader import load_reporting_part
    from firmware_config.schema import GateConfig

    part = load_reporting_part(args.config, overrides=overrides)
    notifier = SystemdNotifier.from_environment()
    indicator = build_indicator(part or GateConfig(device_id="gate"), None, ())
    report = build_status_report(part) if part is not None else None
    try:
        if report is not None:
            report.start()
        waiting = ConfigErrorState(error, reload=load, indicator=indicator, notifier=notifier)
        return waiting.wait(stop)
    finally:
        if report is not None:
            report.stop()
        indicator.close()
        notifier.close()
