"""`gatescan site init DIR`: a server installation's CA, broker certificate, Mosquitto config,
users and ACL, and server.toml (server/site/installation.py writes them). `gatescan site list`:
the sites of an installation (a site is named by the `--site` of the gates registered to it),
with their gates counted by state. `gatescan site rules --site S`: its anti-passback and
capacity.

`gatescan backup DIR --config server.toml` and `gatescan restore DIR --to SITE_DIR`: the
installation and its database copied as of one moment, and put back on this machine or a new one
(server/backup/)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    Commands,
    add_config_option,
    add_db_option,
    no_database,
)

if TYPE_CHECKING:
    from server.store.database import Store

DEFAULT_MQTT_PORT = 8883
DEFAULT_LOOPBACK_PORT = 1883
DEFAULT_WEB_PORT = 8080
DEFAULT_ENROL_PORT = 8443


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    site = commands.add_parser("site", help="set up a server installation (site init DIR)")
    actions = site.add_subparsers(title="actions", metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="write a CA, the broker's TLS certificate and config, and server.toml into DIR",
        description="Write what a server installation needs into DIR: its own CA, the broker's"
        " certificate, mosquitto.conf (TLS listener, plain MQTT on loopback only), the"
        " collector's broker user and password file, the ACL, and server.toml for"
        " `gatescan server --config DIR/server.toml`.",
    )
    init.add_argument("folder", metavar="DIR", type=Path)
    init.add_argument(
        "--host",
        action="append",
        metavar="NAME",
        help="the broker's name or address on the LAN, as gates will write it in mqtts://NAME"
        " (may be given more than once; the first goes in server.toml; default: this machine's"
        " host name). localhost, 127.0.0.1 and ::1 are always in the certificate",
    )
    init.add_argument("--mqtt-port", type=int, default=DEFAULT_MQTT_PORT, metavar="P",
                      help="the TLS listener's port (default: %(default)s)")  # fmt: skip
    init.add_argument(
        "--loopback-port",
        type=int,
        default=DEFAULT_LOOPBACK_PORT,
        metavar="P",
        help="plain MQTT on 127.0.0.1 only (default: %(default)s; 0: none)",
    )
    init.add_argument("--web-port", type=int, default=DEFAULT_WEB_PORT, metavar="W",
                      help="the dashboard's port (default: %(default)s)")  # fmt: skip
    init.add_argument("--enrol-port", type=int, default=DEFAULT_ENROL_PORT, metavar="E",
                      help="the enrolment service's HTTPS port, for gates in setup mode"
                      " (default: %(default)s)")  # fmt: skip
    init.add_argument(
        "--db", default="gatescan.db", help="the database server.toml names (default: %(default)s"
        ", in DIR)",
    )  # fmt: skip
    init.add_argument(
        "--force", action="store_true", help="replace an existing installation (and its CA)"
    )
    init.set_defaults(run=run_init)
    listing = actions.add_parser(
        "list", help="the sites of this installation, with their gates by state"
    )
    add_db_option(listing)
    add_config_option(listing)
    listing.set_defaults(run=run_list)
    rules = actions.add_parser(
        "rules",
        help="a site's presence rules: anti-passback and capacity (pushed to its gates)",
        description="Show or change who may come in at a site's entrances while inside: "
        "--anti-passback hard refuses a second entry without an exit (already_inside), soft "
        "lets them in and records the warning, off does not look; --capacity N refuses "
        "newcomers while N people are inside (site_full), none lifts it. Gates in access mode "
        "apply them within a second or two; exits are never refused.",
    )
    rules.add_argument("--site", required=True, help="the site (a name, e.g. hq)")
    rules.add_argument("--anti-passback", choices=("off", "soft", "hard"))
    rules.add_argument("--capacity", metavar="N|none", help="the most people inside at once")
    add_db_option(rules)
    add_config_option(rules)
    rules.set_defaults(run=run_rules, command=rules.prog)
    site.set_defaults(run=lambda _args: _usage(site))
    _add_backup_parsers(commands)


def _add_backup_parsers(commands: Commands[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="copy the installation and its database into DIR (a running server is fine)",
        description="Copy, as of one moment, the database (SQLite: its online backup; "
        "PostgreSQL: pg_dump), the installation's CA and keys, the broker's dynamic security "
        "state, its password and ACL files and server.toml into DIR (new or empty), with a "
        "manifest of their SHA-256. It holds every secret of the installation: keep it as the "
        "server's own disk.",
    )
    backup.add_argument("folder", metavar="DIR", type=Path)
    backup.add_argument(
        "--site-dir",
        type=Path,
        metavar="DIR",
        help="the installation's folder (default: the folder of --config)",
    )
    add_db_option(backup)
    add_config_option(backup)
    backup.add_argument(
        "--alerts",
        type=Path,
        metavar="FILE",
        help="alerts.toml, kept too when it is in the installation's folder (default:"
        " server.toml's)",
    )
    backup.set_defaults(run=run_backup)
    restore = commands.add_parser(
        "restore",
        help="put a backup back: the installation into --to DIR, and its database",
        description="Check every file of the backup against its manifest, then write the "
        "installation into --to DIR (keys 0600 again; mosquitto.conf made to name DIR) and put "
        "the database where its server.toml says (or --db). Gates need nothing: their CA and "
        "logins are the backup's. An existing installation or database is replaced only with "
        "--force.",
    )
    restore.add_argument("folder", metavar="DIR", type=Path)
    restore.add_argument(
        "--to",
        required=True,
        type=Path,
        metavar="DIR",
        help="the installation's folder to write (e.g. /etc/gatescan/site)",
    )
    restore.add_argument(
        "--db",
        help="where the database goes (default: as the backup's server.toml says, relative to"
        " --to); a PostgreSQL database must exist",
    )
    restore.add_argument(
        "--force", action="store_true", help="replace an installation or database already there"
    )
    restore.set_defaults(run=run_restore)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_BAD_INPUT


def run_init(args: argparse.Namespace) -> int:
    from server.site.installation import SiteInitError, SiteRequest, init_site

    request = SiteRequest(
        folder=args.folder,
        hosts=tuple(args.host or [socket.gethostname()]),
        mqtt_port=args.mqtt_port,
        loopback_port=args.loopback_port or None,
        web_port=args.web_port,
        enrol_port=args.enrol_port,
        db=args.db,
        force=args.force,
    )
    try:
        installation = init_site(request)
    except SiteInitError as exc:
        print(f"gatescan site init: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"gatescan site init: cannot write {exc.filename or args.folder}: {exc.strerror}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    files = installation.files
    print(f"gatescan site init: wrote {len(installation.written)} files in {files.folder}")
    print(f"  broker:    mosquitto -c {files.conf}   ({installation.broker_url})")
    print(f"  server:    gatescan server --config {installation.server_config}")
    print(f"  each gate: mqtt.broker = {installation.broker_url!r}, mqtt.ca_file = a copy of"
          f" {files.ca_file}")  # fmt: skip
    print(f"  gates:     gatescan gate add GATE-ID --site SITE --qr GATE-ID.png --config"
          f" {installation.server_config}   (enrolment at {installation.enrol_url})")  # fmt: skip
    print(f"  hand-kept gate users: mosquitto_passwd {files.password_file} GATE-ID")
    if installation.broker_owner is None:
        print(
            "  the broker reads its key, password file and data folder as the `mosquitto` user:"
            f" chown mosquitto: {files.keyfile} {files.certfile} {files.password_file}"
            f" {files.persistence} {files.dynsec_config}"
        )
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    from gatescan.commands.accounts import print_table
    from server.store.database import Store
    from server.store.gates import GATE_STATES, GateRegistry

    if no_database(args.db, "gatescan site list"):
        return EXIT_BAD_INPUT
    store = Store(args.db)
    try:
        counts = GateRegistry(store.engine).site_counts()
    finally:
        store.close()
    rows = [
        (site, str(sum(by_state.values())), *(str(by_state[state]) for state in GATE_STATES))
        for site, by_state in sorted(counts.items())
    ]
    print_table(("SITE", "GATES", *(state.upper() for state in GATE_STATES)), rows)
    return EXIT_OK


def run_rules(args: argparse.Namespace) -> int:
    from gatescan.commands.gates import CommandStop, check_text, record_audit, run_on_store
    from server.clock import utc_now
    from server.store.site_policy import set_presence_rules

    def change(store: Store) -> int:
        site = check_text("--site", args.site, required=True)
        capacity: int | Literal["unchanged"] | None = "unchanged"
        if args.capacity is not None:
            text = args.capacity.strip().lower()
            if text == "none":
                capacity = None
            elif text.isdigit() and int(text) >= 1:
                capacity = int(text)
            else:
                raise CommandStop(
                    EXIT_BAD_INPUT, f"--capacity {args.capacity!r}: a number of people, or none"
                )
        rule, limit = set_presence_rules(
            store.engine,
            site,
            utc_now(),
            anti_passback=args.anti_passback,
            capacity=capacity,
        )
        if args.anti_passback is not None or args.capacity is not None:
            record_audit(
                store, "site", site, "site rules", site=site, anti_passback=rule, capacity=limit
            )
        print(f"site {site}: anti-passback {rule}, capacity {limit or 'none'}")
        return EXIT_OK

    return run_on_store(args, change, new_database_ok=True)


def run_backup(args: argparse.Namespace) -> int:
    from server.backup.manifest import BackupError
    from server.backup.take import BackupRequest, take_backup

    site_dir = args.site_dir or (args.config.parent if args.config is not None else None)
    if site_dir is None:
        print("gatescan backup: give --config server.toml (or --site-dir DIR and --db URL)",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    request = BackupRequest(args.folder, site_dir, args.db, alerts=args.alerts)
    try:
        manifest = take_backup(request)
    except BackupError as exc:
        print(f"gatescan backup: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"gatescan backup: {exc.filename or args.folder}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    total = sum(entry.size for entry in manifest.files)
    print(f"gatescan backup: {len(manifest.files)} files ({total:,} bytes) in {args.folder},"
          f" from {manifest.site_dir} and {manifest.database}")  # fmt: skip
    print("  it holds the installation's CA key and every password: keep it as the server's disk")
    return EXIT_OK


def run_restore(args: argparse.Namespace) -> int:
    from server.backup.manifest import BackupError
    from server.backup.restore import RestoreRequest, restore_backup

    request = RestoreRequest(args.folder, args.to, db=args.db, force=args.force)
    try:
        restored = restore_backup(request)
    except BackupError as exc:
        print(f"gatescan restore: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"gatescan restore: {exc.filename or args.to}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    files = restored.files
    print(f"gatescan restore: {len(restored.written)} files in {files.folder} and the database"
          f" at {restored.database} (backup of {restored.manifest.created_at}, gatescan"
          f" {restored.manifest.gatescan_version})")  # fmt: skip
    print(f"  broker: mosquitto -c {files.conf}")
    print(f"  server: gatescan server --config {files.folder / 'server.toml'}")
    if restored.broker_owner is None:
        print(f"  as root: chown -R mosquitto: {files.keyfile} {files.certfile}"
              f" {files.password_file} {files.persistence}")  # fmt: skip
    return EXIT_OK
