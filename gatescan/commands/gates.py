"""The gate registry from the command line: `gatescan gate add|list|revoke|replace|retire|deliver`.

    gatescan gate add gate-hq-01 --site hq --location lobby --qr hq-01.png --config server.toml

`add` registers a pending gate and writes its enrolment card: a QR of the enrolment code
(protocol/enrolment.py) holding a single-use token, printed once with its expiry. A gate in setup
mode that reads it exchanges the token at the enrolment service (`gatescan server`) for a broker
login of its own. `revoke` disables the gate's broker client at once (a connected gate is
dropped and refused from then on); `replace` gives the same gate id a new card (the old card's
password is changed, so it is refused); `retire` takes a gate out of service and off the
fleet page's list of gates needing attention. `replace` also says how many events the gate's
last telemetry counted unacknowledged (they are on the old card only), and `deliver` stores such
events, as `gatescan journal export` took them off the old card, checked as the collector checks
them. `gatescan provision` gives a pending gate a new
code for its SD card with the same functions (`pending_gate`, `new_card`, `reissue_card`).

Each command takes `--config` (server.toml: the database, the enrolment URL, the CA, the broker
and its admin) or the flags themselves. The admin's password never goes on a command line:
$GATESCAN_ADMIN_PASSWORD, the systemd credential admin_password, or --admin-password-file.

Exit codes: 0 done; 1 the broker could not be told (the registry's change is kept: run the
command again); 2 bad input; 3 no such gate.
"""

from __future__ import annotations

import argparse
import sys
import time
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.commands.accounts import local_time, print_table
from gatescan.options import (
    DEFAULT_BROKER,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NO_SUCH,
    EXIT_OK,
    Commands,
    MqttLoginError,
    add_admin_options,
    add_config_option,
    add_db_option,
    admin_login,
    no_database,
)
from server.clock import utc_now

if TYPE_CHECKING:
    from server.locations.records import Location
    from server.store.audit import AuditAction
    from server.store.database import Store
    from server.store.gates import GateRecord, GateRegistry

DEFAULT_TOKEN_HOURS = 72.0
# What `gatescan gate command` may ask (release_door stays the dashboard's, with its own audit).
REMOTE_ACTIONS = (
    "identify", "selftest_gpio", "reload_config", "restart", "send_logs", "push_config"
)  # fmt: skip
MAX_TEXT = 200


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    gate = commands.add_parser("gate", help="register gates and their enrolment cards")
    actions = gate.add_subparsers(title="actions", metavar="ACTION", required=True)

    add = _action(actions, "add", "register a pending gate and write its enrolment QR", run_add)
    add.add_argument("--site", required=True, help="the site it belongs to (a name, e.g. hq)")
    add.add_argument("--location", default="", help="where it stands (e.g. 'lobby, lane 2')")
    add.add_argument("--direction", choices=["in", "out"], default="in")
    _card_options(add)

    listing = _action(actions, "list", "gates: site, state, when", run_list, named=False)
    listing.add_argument("--site", help="only this site's gates")
    _action(actions, "revoke", "refuse a gate at the broker at once (drops it if connected)",
            run_revoke, admin=True)  # fmt: skip
    replace = _action(actions, "replace", "a new card for the same gate id (the old one is"
                      " refused)", run_replace, admin=True)  # fmt: skip
    _card_options(replace)
    _action(actions, "retire", "take a gate out of service (off the attention list)",
            run_retire, admin=True)  # fmt: skip
    command = _action(actions, "command", "ask a running gate to do something now, through the"
                      " server's collector, and print its answer", run_command)  # fmt: skip
    command.add_argument("action", metavar="ACTION", choices=REMOTE_ACTIONS,
                         help=" | ".join(REMOTE_ACTIONS))  # fmt: skip
    command.add_argument(
        "--include-relay",
        action="store_true",
        help="selftest_gpio: test the door relay too (THE DOOR OPENS)",
    )
    command.add_argument(
        "--lines", type=int, default=50, metavar="N", help="send_logs: recent lines, 1-50"
    )
    command.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
        help="push_config: a setting (repeat it; JSON values: camera.roi=[0.25,0,0.5,1]); the "
        "whole push replaces the gate's last one",
    )  # fmt: skip
    command.add_argument(
        "--clear", action="store_true", help="push_config: take every pushed setting back"
    )
    command.add_argument(
        "--wait", type=float, default=20.0, metavar="S", help="seconds to wait for the answer"
    )
    deliver = _action(actions, "deliver", "store the events an old card had not delivered"
                      " (a file of `gatescan journal export`)", run_deliver)  # fmt: skip
    deliver.add_argument(
        "events_file", type=Path, metavar="FILE", help="JSON Lines, as `journal export` writes"
    )
    add_location_parser(commands)


def _action(
    actions: Commands[argparse.ArgumentParser],
    name: str,
    help: str,
    run: object,
    named: bool = True,
    admin: bool = False,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help, description=help)
    if named:
        parser.add_argument("device_id", metavar="ID")
    add_db_option(parser)
    add_config_option(parser)
    if admin:
        add_broker_reach(parser)
    parser.set_defaults(run=run, command=parser.prog)
    return parser


def add_broker_reach(parser: argparse.ArgumentParser) -> None:
    """The broker as the admin reaches it (server.toml's [mqtt] broker and ca_file)."""
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="default: %(default)s")
    parser.add_argument("--ca-file", type=Path, metavar="FILE", help="the broker's CA (mqtts)")
    parser.add_argument("--cert-file", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--key-file", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    add_admin_options(parser)


def _card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--qr", type=Path, required=True, metavar="FILE.png",
                        help="where to write the enrolment card's QR (PNG)")  # fmt: skip
    add_code_options(parser)
    if not any(action.dest == "ca_file" for action in parser._actions):
        add_broker_reach(parser)


def add_code_options(parser: argparse._ActionsContainer) -> None:
    """What `new_card` reads besides the CA (--ca-file): the token's life and the enrolment
    service's URL. `gatescan provision` takes them too."""
    parser.add_argument(
        "--token-hours",
        type=float,
        default=DEFAULT_TOKEN_HOURS,
        metavar="H",
        help="how long the card's token may be used (default: %(default).0f hours)",
    )
    parser.add_argument(
        "--enrol-url",
        metavar="URL",
        help="the enrolment service, https://HOST:PORT (server.toml's enrol_url)",
    )


class CommandStop(Exception):
    """A registry command (`gate`, `key`, `pass`, `provision`) stops: `code` its exit code, str()
    the line for the admin."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_text(flag: str, text: str, required: bool) -> str:
    """A free-text flag, stripped: refused empty (if `required`), over MAX_TEXT, or holding control
    characters."""
    cleaned = text.strip()
    if required and not cleaned:
        raise CommandStop(EXIT_BAD_INPUT, f"{flag} is empty")
    if len(cleaned) > MAX_TEXT or any(unicodedata.category(ch)[0] == "C" for ch in cleaned):
        raise CommandStop(EXIT_BAD_INPUT, f"{flag}: at most {MAX_TEXT} printable characters")
    return cleaned


def _pushed_settings(pairs: list[str], clear: bool, device_id: str) -> dict[str, object]:
    """`--set KEY=VALUE ...` as push_config's settings, checked as the dashboard's form is."""
    import json

    from firmware_config.errors import ConfigError
    from server.dashboard.gate_settings.form import check_settings

    if not pairs and not clear:
        raise CommandStop(EXIT_BAD_INPUT, "push_config: give --set KEY=VALUE ... or --clear")
    if pairs and clear:
        raise CommandStop(EXIT_BAD_INPUT, "push_config: --set or --clear, not both")
    settings: dict[str, object] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals:
            raise CommandStop(EXIT_BAD_INPUT, f"--set {pair!r}: write KEY=VALUE")
        try:
            settings[key.strip()] = json.loads(text)
        except ValueError:
            settings[key.strip()] = text  # a word: access, out
    try:
        check_settings(settings, device_id)
    except ConfigError as error:
        raise CommandStop(EXIT_BAD_INPUT, f"push_config: nothing sent\n{error}") from None
    return settings


def _check_id(device_id: str) -> str:
    from protocol.topics import is_valid_device_id
    from server.site.broker_config import COLLECTOR_USER
    from server.site.dynsec_config import ADMIN_USER

    if not is_valid_device_id(device_id):
        raise CommandStop(EXIT_BAD_INPUT, f"{device_id!r} is not a gate id: up to 64 letters,"
                       " digits, '.', '_' or '-', starting with a letter or digit")  # fmt: skip
    if device_id in (COLLECTOR_USER, ADMIN_USER):
        raise CommandStop(EXIT_BAD_INPUT, f"{device_id!r} is the server's own broker user")
    return device_id


def run_on_store(args: argparse.Namespace, work: object, new_database_ok: bool = False) -> int:
    from server.store.database import Store

    if not new_database_ok and no_database(args.db, args.command):
        return EXIT_BAD_INPUT
    store = Store(args.db)
    try:
        return int(work(store))  # type: ignore[operator]
    except CommandStop as stop:
        print(f"{args.command}: {stop}", file=sys.stderr)
        return stop.code
    finally:
        store.close()


def _registry(store: Store) -> GateRegistry:
    from server.store.gates import GateRegistry

    return GateRegistry(store.engine)


def record_audit(
    store: Store, action: AuditAction, subject: str, change: str, **details: object
) -> None:
    """An audit row for a registry command, its actor the admin running it. A row whose details
    name a site (`site=`) is that site's (site_id: its managers read it on the audit page)."""
    from gatescan.commands.accounts import _actor
    from server.store.audit import AuditLog

    site = details.get("site")
    AuditLog(store.engine).record(
        _actor(),
        action,
        subject,
        {"change": change, **details},
        site_id=site if isinstance(site, str) else "",
    )


# --- add, replace: a card ----------------------------------------------------------------------


def new_card(args: argparse.Namespace) -> tuple[str, str, datetime]:
    """A new token, its card's code text (checked), and its expiry; nothing written yet. Reads
    args.enrol_url, args.ca_file (the installation's CA: its fingerprint) and args.token_hours;
    `gate add`, `gate replace` and `gatescan provision` all make their codes here."""
    from server.enrolment.tokens import enrolment_code, new_token

    if not args.enrol_url or not args.enrol_url.startswith("https://"):
        raise CommandStop(EXIT_BAD_INPUT, "give the enrolment service's https:// URL: --enrol-url,"
                       " or --config server.toml (site init writes enrol_url)")  # fmt: skip
    if args.ca_file is None:
        raise CommandStop(EXIT_BAD_INPUT, "give the installation's CA (--ca-file, or --config)")
    if not 0 < args.token_hours <= 24 * 90:
        raise CommandStop(EXIT_BAD_INPUT, "--token-hours: more than 0, at most 2160 (90 days)")
    try:
        ca_pem = args.ca_file.read_bytes()
        token = new_token()
        code = enrolment_code(args.enrol_url, token, ca_pem)
    except OSError as exc:
        raise CommandStop(EXIT_BAD_INPUT, f"cannot read {args.ca_file}: {exc.strerror}") from None
    except ValueError:
        raise CommandStop(EXIT_BAD_INPUT, f"{args.ca_file} is not a PEM certificate") from None
    return token, code.text(), utc_now() + timedelta(hours=args.token_hours)


def write_qr(path: Path, text: str) -> None:
    """The card's QR as a PNG (segno; quiet zone included, 8 px a module)."""
    import segno

    if path.suffix.lower() != ".png":
        raise CommandStop(EXIT_BAD_INPUT, f"--qr {path}: the card is written as a .png file")
    try:
        segno.make(text, error="m", micro=False).save(str(path), kind="png", scale=8, border=4)
    except OSError as exc:
        raise CommandStop(EXIT_BAD_INPUT, f"cannot write {path}: {exc.strerror}") from None


def _print_card(gate_id: str, site: str, text: str, expires: datetime, qr: Path) -> None:
    print(f"gate {gate_id} (site {site}): enrolment card written to {qr}")
    print(f"  valid until {local_time(expires)}, for one enrolment; a secret until then")
    print(f"  code: {text}")


def run_add(args: argparse.Namespace) -> int:
    from server.enrolment.tokens import token_digest
    from server.store.gates import GateError, NewGate

    def add(store: Store) -> int:
        gate = NewGate(
            _check_id(args.device_id),
            check_text("--site", args.site, required=True),
            check_text("--location", args.location, required=False),
            args.direction,
        )
        token, text, expires = new_card(args)
        write_qr(args.qr, text)
        try:
            _registry(store).add(gate, token_digest(token), expires, utc_now())
        except GateError as exc:
            args.qr.unlink(missing_ok=True)
            raise CommandStop(EXIT_BAD_INPUT, str(exc)) from None
        record_audit(store, "gate", gate.device_id, "gate add", site=gate.site_id)
        _print_card(gate.device_id, gate.site_id, text, expires, args.qr)
        return EXIT_OK

    return run_on_store(args, add, new_database_ok=True)


def run_replace(args: argparse.Namespace) -> int:
    from server.enrolment.tokens import token_digest

    def replace(store: Store) -> int:
        gate = _known(store, args.device_id)
        if gate.state == "retired":
            raise CommandStop(
                EXIT_BAD_INPUT, f"gate {gate.device_id} is retired: add a new gate id"
            )
        token, text, expires = new_card(args)
        write_qr(args.qr, text)
        _registry(store).new_token(gate.device_id, token_digest(token), expires, utc_now())
        unacked, reported_at = last_unacked(store, gate.device_id)
        record_audit(store, "gate", gate.device_id, "gate replace", unacked=unacked,
                     site=gate.site_id)  # fmt: skip
        _print_card(gate.device_id, gate.site_id, text, expires, args.qr)
        _print_unacked(gate.device_id, unacked, reported_at)
        return _tell_broker(args, gate.device_id, "scramble")

    return run_on_store(args, replace)


def last_unacked(store: Store, device_id: str) -> tuple[int | None, datetime | None]:
    """How many events the gate's outbox held unacknowledged when it last sent telemetry, and
    when: what its old card still holds, as far as the server knows (None: no telemetry)."""
    for device in store.devices():
        if device.device_id == device_id and device.telemetry is not None:
            depth = device.telemetry.get("outbox_depth")
            return (depth if isinstance(depth, int) else None), device.telemetry_at
    return None, None


def _print_unacked(device_id: str, unacked: int | None, reported_at: datetime | None) -> None:
    if unacked is None:
        print("  the server has no telemetry of this gate: how many events its old card holds"
              " undelivered is unknown", file=sys.stderr)  # fmt: skip
        return
    when = local_time(reported_at) if reported_at is not None else "?"
    print(f"  its last telemetry ({when}) said {unacked} event(s) were not yet acknowledged",
          file=sys.stderr)  # fmt: skip
    if unacked:
        print(f"  they are on the old card only: `gatescan journal export --data-dir CARD"
              f" --out {device_id}.jsonl` from it, then `gatescan gate deliver {device_id}"
              f" {device_id}.jsonl`; without the card they are lost", file=sys.stderr)  # fmt: skip


def run_deliver(args: argparse.Namespace) -> int:
    """The events a replaced gate's old card had not delivered, stored as the collector stores
    them: each checked as it checks an event of this gate's topic (the same device id, the
    registered site, the time rule), stored by event id (one stored before is not stored
    again), a refused one kept as a dead letter. Audited with the counts."""
    from protocol.topics import Topic, device_topic
    from server.collector.prepare import AcceptedEvent, IncomingMessage, Refused, prepare
    from server.store.writes import Conflict, DeadLetterRecord, WriteBatch

    def deliver(store: Store) -> int:
        gate = _known(store, args.device_id)
        try:
            lines = [line for line in args.events_file.read_bytes().splitlines() if line.strip()]
        except OSError as exc:
            raise CommandStop(
                EXIT_BAD_INPUT, f"cannot read {args.events_file}: {exc.strerror}"
            ) from None
        topic = device_topic(gate.device_id, Topic.EVENTS)
        sites = _registry(store).sites()
        accepted: list[AcceptedEvent] = []
        refused: list[Refused] = []
        for line in lines:
            done = prepare(IncomingMessage(topic, line), store.entry_row, utc_now, None, sites)
            if isinstance(done, AcceptedEvent):
                accepted.append(done)
            elif isinstance(done, Refused):
                refused.append(done)

        def conflict_letter(conflict: Conflict) -> DeadLetterRecord:
            payload = accepted[conflict.position].message.payload
            return DeadLetterRecord(topic, payload, "conflict", conflict.detail,
                                    event_id=conflict.event_id)  # fmt: skip

        batch = WriteBatch(
            entries=[event.row for event in accepted],
            dead_letters=[item.dead_letter() for item in refused],
            conflict_letter=conflict_letter,
        )
        stored = store.write_batch(batch, utc_now()).events
        counts = {
            "events": len(lines),
            "new": len(stored.new),
            "stored_before": stored.duplicate_count,
            "refused": len(refused) + len(stored.conflicts),
        }
        record_audit(store, "gate", gate.device_id, "gate deliver", site=gate.site_id, **counts)
        print(f"gate {gate.device_id}: {counts['events']} event(s) read, {counts['new']} stored"
              f" now, {counts['stored_before']} stored before, {counts['refused']} refused",
              file=sys.stderr)  # fmt: skip
        reasons = sorted({item.reason for item in refused} | {"conflict" for _ in stored.conflicts})
        if reasons:
            print(f"  refused ({', '.join(reasons)}): kept as dead letters", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK

    return run_on_store(args, deliver)


# --- provision: a new card for a pending gate, written on its SD card -------------------------


def pending_gate(store: Store, device_id: str) -> GateRecord:
    """The registered gate `gatescan provision` may issue a new code for: pending (its card not
    used). Any other state stops with what to run instead: an enrolled gate's identity is never
    taken by a card made in passing."""
    gate = _registry(store).get(device_id)
    config = "--config server.toml"
    if gate is None:
        raise CommandStop(EXIT_NO_SUCH, f"no gate {device_id!r} is registered: run `gatescan"
                       f" gate add {device_id} --site SITE --qr {device_id}.png {config}`"
                       " first, then provision again")  # fmt: skip
    replace = f"`gatescan gate replace {device_id} --qr {device_id}.png {config}`"
    if gate.state == "enrolled":
        raise CommandStop(EXIT_BAD_INPUT, f"gate {device_id} is enrolled: a new card would"
                       f" take its identity. If this card is for a Pi that replaces it,"
                       f" run {replace} first (the broker then refuses the old card's"
                       " login), then provision again")  # fmt: skip
    if gate.state == "revoked":
        raise CommandStop(EXIT_BAD_INPUT, f"gate {device_id} is revoked: to bring it back,"
                       f" run {replace} first, then provision again")  # fmt: skip
    if gate.state == "retired":
        raise CommandStop(EXIT_BAD_INPUT, f"gate {device_id} is retired: register the new"
                       " gate under a new id (`gatescan gate add NEW-ID ...`)")  # fmt: skip
    return gate


def reissue_card(store: Store, device_id: str, token: str, expires: datetime) -> GateRecord:
    """Give a pending gate the token of a card made by `new_card` (its earlier card's token is
    then unknown), audited; stops if the gate stopped being pending meanwhile."""
    from server.enrolment.tokens import token_digest

    gate = _registry(store).reissue_pending(device_id, token_digest(token), expires, utc_now())
    if gate is None:
        pending_gate(store, device_id)  # says what it is now
        raise CommandStop(
            EXIT_BAD_INPUT, f"gate {device_id} changed meanwhile: run provision again"
        )
    record_audit(store, "gate", device_id, "gate provision", site=gate.site_id)
    return gate


# --- revoke, retire ----------------------------------------------------------------------------


def _known(store: Store, device_id: str) -> GateRecord:
    gate = _registry(store).get(device_id)
    if gate is None:
        raise CommandStop(EXIT_NO_SUCH, f"no gate {device_id!r} is registered (gatescan gate list)")
    return gate


def _set_state(args: argparse.Namespace, state: str) -> int:
    def change(store: Store) -> int:
        gate = _known(store, args.device_id)
        _registry(store).set_state(gate.device_id, state, utc_now())  # type: ignore[arg-type]
        change = f"gate {state[:-1] if state.endswith('d') else state}"
        record_audit(store, "gate", gate.device_id, change, site=gate.site_id)
        print(f"gate {gate.device_id} (site {gate.site_id}) {state}", file=sys.stderr)
        return _tell_broker(args, gate.device_id, "disable")

    return run_on_store(args, change)


def run_revoke(args: argparse.Namespace) -> int:
    return _set_state(args, "revoked")


def run_retire(args: argparse.Namespace) -> int:
    return _set_state(args, "retired")


def _tell_broker(args: argparse.Namespace, device_id: str, what: str) -> int:
    """Disable (or disable and scramble) the gate's broker client; the registry already says
    so, so a broker that cannot be told is an error to retry, not a lost change."""
    from server.broker_admin.dynsec import BrokerAdmin, BrokerAdminError, run_as_admin

    started = time.monotonic()
    try:
        login = admin_login(args)
        change = BrokerAdmin.disable if what == "disable" else BrokerAdmin.scramble
        found = run_as_admin(lambda: BrokerAdmin(login), lambda admin: change(admin, device_id))
    except (MqttLoginError, BrokerAdminError) as exc:
        print(f"{args.command}: the registry is changed, but the broker was not told: {exc};"
              f" run the command again once it can be reached", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    took_ms = (time.monotonic() - started) * 1000
    if found:
        print(f"  broker: client {device_id} disabled ({took_ms:.0f} ms); a connected gate"
              " is dropped", file=sys.stderr)  # fmt: skip
    else:
        print(f"  broker: {device_id} has no client (it never enrolled)", file=sys.stderr)
    return EXIT_OK


# --- list --------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    def show(store: Store) -> int:
        gates = [g for g in _registry(store).all() if args.site in (None, g.site_id)]
        rows = [
            (
                gate.device_id,
                gate.site_id,
                gate.location or "-",
                gate.direction,
                gate.state,
                local_time(gate.changed_at),
                local_time(gate.token_expires_at) if gate.token_open else "-",
                gate.agent_version or "-",
            )
            for gate in gates
        ]
        header = ("ID", "SITE", "LOCATION", "DIR", "STATE", "SINCE", "CARD EXPIRES", "AGENT")
        print_table(header, rows)
        return EXIT_OK

    return run_on_store(args, show)


# --- command: a remote command to a running gate (issue 17) -----------------------------------


def run_command(args: argparse.Namespace) -> int:
    """Write the command to the database (server/store/gate_commands.py), where the server's
    collector picks it up and sends it; wait for the gate's answers and print each, with the
    milliseconds since the command was written. Exit 0 done (or a restart accepted), 1 refused,
    failed, unsent, no_answer (sent, and the gate silent for a minute: offline, or older than
    the action) or no answer in time, 3 a gate never registered nor heard from."""
    import secrets

    from server.store.gate_commands import FINAL, NO_ANSWER, CommandRequest, GateCommands

    def command(store: Store) -> int:
        device_id = _check_id(args.device_id)
        rows = GateCommands(store.engine)
        site = rows.site_of(device_id)
        if site is None:
            raise CommandStop(EXIT_NO_SUCH, f"no gate {device_id!r} is registered or known")
        if not 1 <= args.lines <= 50:
            raise CommandStop(EXIT_BAD_INPUT, "--lines: 1 to 50")
        command_args: dict[str, object] = {}
        if args.action == "selftest_gpio" and args.include_relay:
            command_args["include_relay"] = True
        if args.action == "send_logs":
            command_args["lines"] = args.lines
        if args.action == "push_config":
            command_args["settings"] = _pushed_settings(args.settings, args.clear, device_id)
        command_id = secrets.token_urlsafe(12)
        from gatescan.commands.accounts import _actor

        started = time.monotonic()
        rows.request(
            CommandRequest(
                command_id=command_id,
                device_id=device_id,
                site_id=site,
                action=args.action,
                args=command_args,
                requested_by=_actor(),
                requested_at=utc_now(),
            )
        )
        record_audit(store, "command", device_id, args.action, command_id=command_id)
        print(f"command {command_id}: {args.action} to {device_id} (site {site})")
        seen: tuple[str, str] | None = None
        deadline = started + args.wait
        while time.monotonic() < deadline:
            row = rows.get(command_id, utc_now())  # sent long ago, never answered: no_answer
            if row is not None and (row.status, row.detail) != seen:
                seen = (row.status, row.detail)
                elapsed_ms = (time.monotonic() - started) * 1000
                print(f"  {elapsed_ms:7.0f} ms  {row.status}: {row.detail}")
                for line in row.lines:
                    print(f"    {line.get('ts', '')} {line.get('level', '')} "
                          f"{line.get('logger', '')}: {line.get('message', '')}")  # fmt: skip
                if row.status in FINAL | {NO_ANSWER} or (
                    row.status == "accepted" and args.action == "restart"
                ):
                    return EXIT_OK if row.status in ("done", "accepted") else EXIT_FAILED
            time.sleep(0.02)
        print(f"  no final answer within {args.wait:g} s (is `gatescan server` running, the"
              " gate online?)", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED

    return run_on_store(args, command)


# --- location: self check-in posters (issue 18) -------------------------------------------------


def add_location_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan location add|list|disable|enable|rekey`: a self check-in location is the gate of
    a poster (its id is the "gate" its entries name), so its commands sit with the gates'."""
    from server.locations.posters import POSTER_SIZES

    location = commands.add_parser(
        "location", help="self check-in locations: a poster's QR people scan with their phone"
    )
    actions = location.add_subparsers(title="actions", metavar="ACTION", required=True)

    def action(name: str, help: str, run: object, named: bool = True) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help, description=help)
        if named:
            parser.add_argument("location_id", metavar="ID", help="loc-..., as `list` shows")
        add_db_option(parser)
        add_config_option(parser)
        parser.set_defaults(run=run, command=parser.prog)
        return parser

    def poster_options(parser: argparse.ArgumentParser) -> None:
        from gatescan.commands.server import add_public_url_option

        parser.add_argument("--qr", type=Path, metavar="FILE.png", help="write its QR here")
        parser.add_argument(
            "--poster",
            type=Path,
            metavar="FILE.pdf|svg",
            help="write its poster here, to print: PDF or SVG, as the file's suffix says",
        )
        parser.add_argument("--size", choices=POSTER_SIZES, default="a4", help="the poster's page")
        add_public_url_option(parser)

    add = action("add", "make a location and its poster; print its check-in URL", run_location_add,
                 named=False)  # fmt: skip
    add.add_argument("name", metavar="NAME", help="what the poster says, e.g. 'Quầy lễ tân'")
    add.add_argument("--site", required=True, help="the site it belongs to (a name, e.g. hq)")
    add.add_argument("--direction", choices=["in", "out"], default="in")
    poster_options(add)
    listing = action("list", "locations: site, name, enabled", run_location_list, named=False)
    listing.add_argument("--site", help="only this site's locations")
    action("disable", "stop check-ins there: its posters stop working", run_location_disable)
    action("enable", "take check-ins there again (its posters work again)", run_location_enable)
    rekey = action("rekey", "a new key: every poster printed before stops working; write the"
                   " new one", run_location_rekey)  # fmt: skip
    poster_options(rekey)


def _public_url(args: argparse.Namespace) -> str:
    from server.locations.urls import check_public_url

    if not args.public_url:
        raise CommandStop(EXIT_BAD_INPUT, "a poster needs the server's public address, where"
                          " visitors' phones reach it: --public-url https://..., or --config"
                          " server.toml with public_url")  # fmt: skip
    try:
        return check_public_url(args.public_url)
    except ValueError as exc:
        raise CommandStop(EXIT_BAD_INPUT, f"--public-url: {exc}") from None


def _poster_paths(args: argparse.Namespace) -> None:
    if args.qr is None and args.poster is None:
        raise CommandStop(EXIT_BAD_INPUT, "write the QR, the poster or both: --qr FILE.png,"
                          " --poster FILE.pdf|svg")  # fmt: skip
    if args.qr is not None and args.qr.suffix.lower() != ".png":
        raise CommandStop(EXIT_BAD_INPUT, f"--qr {args.qr}: the QR is written as a .png file")
    if args.poster is not None and args.poster.suffix.lower() not in (".pdf", ".svg"):
        raise CommandStop(EXIT_BAD_INPUT, f"--poster {args.poster}: the poster is written as"
                          " .pdf or .svg (the file's suffix says which)")  # fmt: skip


def _write_poster(args: argparse.Namespace, location: Location, url: str) -> None:
    from server.locations.posters import PosterError, poster_pdf, poster_svg, qr_png

    try:
        if args.qr is not None:
            args.qr.write_bytes(qr_png(url))
            print(f"  QR written to {args.qr}")
        if args.poster is not None and args.poster.suffix.lower() == ".pdf":
            args.poster.write_bytes(poster_pdf(location, url, args.size))
            print(f"  poster ({args.size.upper()}, PDF) written to {args.poster}")
        elif args.poster is not None:
            args.poster.write_text(poster_svg(location, url, args.size), encoding="utf-8")
            print(f"  poster ({args.size.upper()}) written to {args.poster}")
    except PosterError as exc:
        raise CommandStop(EXIT_FAILED, f"--poster {args.poster}: {exc}") from None
    except OSError as exc:
        raise CommandStop(EXIT_FAILED, f"cannot write {exc.filename}: {exc.strerror}") from None


def run_location_add(args: argparse.Namespace) -> int:
    from protocol.verdicts import Direction
    from server.locations.records import LocationError, Locations
    from server.locations.urls import checkin_url

    def add(store: Store) -> int:
        public_url = _public_url(args)
        _poster_paths(args)
        site = check_text("--site", args.site, required=True)
        try:
            made = Locations(store.engine).add(
                args.name, site_id=site, direction=Direction(args.direction), now=utc_now()
            )
        except LocationError as exc:
            raise CommandStop(EXIT_BAD_INPUT, str(exc)) from None
        record_audit(store, "location", made.location_id, "location add", site=made.site_id,
                     name=made.name, direction=made.direction.value)  # fmt: skip
        url = checkin_url(public_url, made)
        print(f"location {made.location_id} (site {made.site_id}): {made.name}")
        print(f"  check-in URL: {url}")
        _write_poster(args, made, url)
        return EXIT_OK

    return run_on_store(args, add, new_database_ok=True)


def run_location_list(args: argparse.Namespace) -> int:
    from server.locations.records import Locations

    def show(store: Store) -> int:
        sites = None if args.site is None else frozenset({args.site})
        rows = [
            (
                found.location_id,
                found.site_id,
                found.name,
                found.direction.value,
                "yes" if found.enabled else "no",
                local_time(found.created_at),
            )
            for found in Locations(store.engine).listed(sites)
        ]
        print_table(("ID", "SITE", "NAME", "DIR", "ENABLED", "MADE"), rows)
        return EXIT_OK

    return run_on_store(args, show)


def _location_enabled(args: argparse.Namespace, enabled: bool) -> int:
    from server.locations.records import Locations

    def change(store: Store) -> int:
        rows = Locations(store.engine)
        found = rows.get(args.location_id)
        if found is None or not rows.disable(found.location_id, enabled=enabled):
            raise CommandStop(EXIT_NO_SUCH, f"no location {args.location_id!r} (gatescan"
                              " location list)")  # fmt: skip
        change = "location enable" if enabled else "location disable"
        record_audit(store, "location", found.location_id, change, site=found.site_id)
        state = "enabled: its posters work" if enabled else "disabled: its posters stop working"
        print(f"location {found.location_id} (site {found.site_id}) {state}", file=sys.stderr)
        return EXIT_OK

    return run_on_store(args, change)


def run_location_disable(args: argparse.Namespace) -> int:
    return _location_enabled(args, enabled=False)


def run_location_enable(args: argparse.Namespace) -> int:
    return _location_enabled(args, enabled=True)


def run_location_rekey(args: argparse.Namespace) -> int:
    from server.locations.records import Locations
    from server.locations.urls import checkin_url

    def rekey(store: Store) -> int:
        public_url = _public_url(args)
        _poster_paths(args)
        made = Locations(store.engine).rekey(args.location_id)
        if made is None:
            raise CommandStop(EXIT_NO_SUCH, f"no location {args.location_id!r} (gatescan"
                              " location list)")  # fmt: skip
        record_audit(store, "location", made.location_id, "location rekey", site=made.site_id)
        url = checkin_url(public_url, made)
        print(f"location {made.location_id} (site {made.site_id}) re-keyed: every poster"
              " printed before stops working")  # fmt: skip
        print(f"  check-in URL: {url}")
        _write_poster(args, made, url)
        return EXIT_OK

    return run_on_store(args, rekey)
