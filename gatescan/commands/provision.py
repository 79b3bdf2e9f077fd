"""`gatescan provision --gate ID --out DIR`: the boot-partition files of a new gate's SD card.

DIR gets `user-data`, `network-config` and `meta-data` (cloud-init, which Raspberry Pi OS
Trixie images run from the boot partition on first boot) and `gatescan/`, the bundle: the
gatescan wheel built from this tree and the constraints that pin its dependencies to the OS's.
Copy DIR's contents onto the card's boot partition, or give the files to rpi-imager
(`--cloudinit-userdata`, `--cloudinit-networkconfig`): docs/operations.md, "From a blank SD card".

The enrolment code comes from the gate registry: `--config server.toml` (or `--db` with
`--enrol-url` and `--ca-file`) names it, and the gate must be registered and pending (`gatescan
gate add ID --site S ...`). The registry keeps only a token's SHA-256, so the code `gate add`
printed cannot be read back: provision issues the gate a new one, as `gate replace` does (the
earlier card's token is then unknown to the enrolment service), made by the same function
(gates.new_card: server.toml's enrol_url, the CA's fingerprint, token_hours), and says so. It
is recorded only once the bundle is built, just before the card is written. An enrolled,
revoked or retired gate is refused with what to run instead: a card made in passing never
takes an enrolled gate's identity. Or `--enrolment-code-file FILE` (not with --config/--db):
a code another installation's `gate add` printed.

Secrets come from files or the registry, never the command line: the Wi-Fi passphrase
(--wifi-psk-file) and the enrolment code. The files that hold them are written 0600, and
neither is printed.

Exit codes: 0 written; 1 the wheel could not be built or the files failed cloud-init's check;
2 bad input (the message says which), or a gate that is not pending; 3 no such gate registered.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.commands.gates import CommandStop, add_code_options
from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NO_SUCH,
    EXIT_OK,
    Commands,
    add_config_option,
    missing_sqlite_file,
)

if TYPE_CHECKING:
    from server.provision.network_config import NetworkConfig

DEFAULT_COUNTRY = "VN"


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    add_provision_parser(commands)
    add_release_parser(commands)


def add_release_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """`gatescan release keygen|sign|make`: the gates' signed releases (server/release/),
    registered beside provisioning, which puts the first release on a card."""
    release = commands.add_parser("release", help="the release key and signed release bundles")
    verbs = release.add_subparsers(title="release commands", metavar="VERB", required=True)
    keygen = verbs.add_parser(
        "keygen", help="make the release key (private 0600) and print the line gates trust"
    )
    keygen.add_argument("--dir", type=Path, required=True, help="where the key is kept")
    keygen.add_argument("--name", default="gatescan-release", help="the key's name on gates")
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    keygen.set_defaults(run=run_keygen)
    sign = verbs.add_parser("sign", help="sign a folder of payload files as release VERSION")
    sign.add_argument("payload", type=Path, metavar="BUNDLE_DIR", help="the release's files")
    sign.add_argument("--version", required=True, help="the release's version")
    sign.add_argument("--install", choices=["venv", "tree"], default="venv")
    sign.add_argument("--key", type=Path, required=True, help="the release key (keygen's .pem)")
    sign.add_argument("--out", type=Path, required=True, help="the bundle file to write")
    sign.set_defaults(run=run_sign)
    make = verbs.add_parser(
        "make", help="build gatescan's wheel from this tree (or --wheel) and sign it as a release"
    )
    make.add_argument("--key", type=Path, required=True, help="the release key (keygen's .pem)")
    make.add_argument("--out", type=Path, required=True, metavar="DIR")
    make.add_argument("--wheel", type=Path, help="a gatescan wheel built elsewhere")
    make.set_defaults(run=run_make)


def run_keygen(args: argparse.Namespace) -> int:
    from server.release.signing import ReleaseError, keygen

    try:
        private, line = keygen(args.dir, args.name, force=args.force)
    except ReleaseError as exc:
        print(f"gatescan release keygen: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"release key: {private} (0600; keep it on this server, never on a gate)")
    print("each gate trusts it with this line in /etc/gatescan/release-keys.pub:")
    print(line)
    return EXIT_OK


def run_sign(args: argparse.Namespace) -> int:
    from protocol.release_bundle import Install
    from server.release.signing import ReleaseError, load_private_key, sign_bundle

    try:
        key = load_private_key(args.key)
        manifest = sign_bundle(args.payload, args.version, Install(args.install), key, args.out)
    except ReleaseError as exc:
        print(f"gatescan release sign: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.out}: release {manifest.version}, {len(manifest.files)} files, signed")
    return EXIT_OK


def run_make(args: argparse.Namespace) -> int:
    from server.provision.bundle import BundleError
    from server.release.signing import ReleaseError, load_private_key, make_release

    try:
        out = make_release(load_private_key(args.key), args.out, args.wheel)
    except (ReleaseError, BundleError) as exc:
        print(f"gatescan release make: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{out}: signed; on a gate: gatescan update --to VERSION --from {out.name}")
    return EXIT_OK


def add_provision_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    provision = commands.add_parser(
        "provision", help="write a new gate's SD card files (cloud-init and the bundle)"
    )
    provision.add_argument("--gate", required=True, metavar="ID", help="gate id and hostname")
    provision.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="where to write the card's files"
    )
    provision.add_argument(
        "--enrolment-code-file",
        type=Path,
        metavar="FILE",
        help="an enrolment code another installation's `gatescan gate add` printed (kept 0600"
        " on the card, used once); without it the code comes from the registry (--config)",
    )
    registry = provision.add_argument_group(
        "the gate registry (server.toml gives these with --config)",
        "a new enrolment code for the pending gate ID, replacing its earlier card's",
    )
    registry.add_argument("--db", help="the registry's database: SQLAlchemy URL or SQLite file")
    registry.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="the installation's CA (site init's ca.crt): its fingerprint goes in the code",
    )
    add_code_options(registry)
    provision.add_argument("--wifi-ssid", metavar="SSID", help="a Wi-Fi network to join")
    provision.add_argument(
        "--wifi-psk-file", type=Path, metavar="FILE", help="its passphrase, alone in a file"
    )
    provision.add_argument(
        "--wifi-country",
        default=DEFAULT_COUNTRY,
        metavar="CC",
        help="the Wi-Fi regulatory domain, two capital letters (default: %(default)s)",
    )
    provision.add_argument(
        "--ssh-key",
        type=Path,
        metavar="FILE",
        help="an OpenSSH public key (.pub): adds the login gateadmin (sudo) and turns SSH on;"
        " without it the gate has no login at all",
    )
    provision.add_argument(
        "--wheel",
        type=Path,
        metavar="FILE",
        help="a gatescan wheel already built (default: build one from this tree)",
    )
    provision.add_argument(
        "--release-key",
        type=Path,
        metavar="FILE",
        help="the release keys the gate trusts (`gatescan release keygen`'s release-key.pub),"
        " written to /etc/gatescan/release-keys.pub; without it the gate refuses every update",
    )
    provision.add_argument(
        "--with-dependencies",
        action="store_true",
        help="also put every dependency's wheel for the Pi in the bundle (downloads them now"
        " from PyPI), so that the gate installs without a package index",
    )
    add_config_option(provision)
    provision.set_defaults(run=run)


def enrolment_code(args: argparse.Namespace) -> tuple[str, Issued | None]:
    """The gate's enrolment code's text: a new one for the pending gate in the registry (with
    what `write` records there), or the --enrolment-code-file's. Raises ProvisionInputError,
    or CommandStop for a gate the registry cannot give a card to."""
    from server.provision.inputs import ProvisionInputError, enrolment_code_file

    from_registry = args.config is not None or args.db is not None
    if args.enrolment_code_file is not None:
        if from_registry:
            raise ProvisionInputError(
                "--enrolment-code-file or the registry (--config/--db), not both: the file is"
                " for a code from another installation; the registry issues this gate a new one"
            )
        return enrolment_code_file(args.enrolment_code_file).text(), None
    if not from_registry:
        raise ProvisionInputError(
            f"no enrolment code: give --config server.toml (a new code for {args.gate}, which"
            f" `gatescan gate add {args.gate} --site SITE` registered) or --enrolment-code-file"
            " FILE (a code another installation's `gatescan gate add` printed)"
        )
    return _registry_code(args)


@dataclass(frozen=True)
class Issued:
    """A new code's token for a pending gate, not yet in the registry (`write` records it)."""

    db: str
    token: str
    expires: datetime


def _registry_code(args: argparse.Namespace) -> tuple[str, Issued]:
    """A new code for the pending gate, checked against the registry; nothing recorded yet."""
    from gatescan.commands.gates import new_card, pending_gate
    from server.provision.inputs import ProvisionInputError
    from server.store.database import Store

    if args.db is None:
        raise ProvisionInputError(f"--config {args.config} names no db: give --db")
    missing = missing_sqlite_file(args.db)
    if missing is not None:  # no gate added yet (or a wrong --db)
        raise CommandStop(EXIT_NO_SUCH, f"no database at {missing}, so no gate {args.gate!r} is"
                       f" registered: run `gatescan gate add {args.gate} --site SITE --qr"
                       f" {args.gate}.png --config server.toml` first, then provision"
                       " again")  # fmt: skip
    store = Store(args.db)
    try:
        pending_gate(store, args.gate)
    finally:
        store.close()
    token, text, expires = new_card(args)
    return text, Issued(args.db, token, expires)


def _record(gate: str, issued: Issued) -> None:
    """The new token in the registry (the gate's earlier card then enrols nothing), said on
    stderr without the code."""
    from gatescan.commands.accounts import local_time
    from gatescan.commands.gates import reissue_card
    from server.store.database import Store

    store = Store(issued.db)
    try:
        record = reissue_card(store, gate, issued.token, issued.expires)
    finally:
        store.close()
    print(
        f"gatescan provision: gate {gate} (site {record.site_id}): a new enrolment code issued,"
        f" valid until {local_time(issued.expires)}, for one enrolment; it is on this card only"
        " (0600); the gate's earlier card no longer enrols",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    from firmware_config.errors import ConfigError
    from server.provision.bundle import BundleError, check_source_tree
    from server.provision.inputs import ProvisionInputError
    from server.provision.network_config import WifiPskError

    try:
        card = read_card(args)
    except (ProvisionInputError, WifiPskError) as error:
        print(f"gatescan provision: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CommandStop as stop:
        print(f"gatescan provision: {stop}", file=sys.stderr)
        return stop.code
    try:
        check_source_tree()
        written = write(args, card)
    except (BundleError, ConfigError) as error:
        print(f"gatescan provision: {error}", file=sys.stderr)
        return EXIT_FAILED
    except CommandStop as stop:
        print(f"gatescan provision: {stop}", file=sys.stderr)
        return stop.code
    for path in written:
        print(path)
    if card.release_keys is None:
        print(
            "gatescan provision: no --release-key: the gate will refuse every update until"
            " /etc/gatescan/release-keys.pub holds the server's release key",
            file=sys.stderr,
        )
    return EXIT_OK


def read_card(args: argparse.Namespace) -> CardInputs:
    """Every input, read and checked before anything is built or written."""
    from server.provision.inputs import (
        ProvisionInputError,
        gate_id,
        release_keys,
        ssh_public_key,
        wifi_country,
        wifi_psk,
        wifi_ssid,
    )
    from server.provision.network_config import network_config

    gate = gate_id(args.gate)
    if (args.wifi_ssid is None) != (args.wifi_psk_file is None):
        raise ProvisionInputError("--wifi-ssid and --wifi-psk-file go together")
    ssid = wifi_ssid(args.wifi_ssid) if args.wifi_ssid is not None else None
    psk = wifi_psk(args.wifi_psk_file) if args.wifi_psk_file is not None else None
    network = network_config(ssid, psk, wifi_country(args.wifi_country))
    ssh_key = ssh_public_key(args.ssh_key) if args.ssh_key is not None else None
    keys = release_keys(args.release_key) if args.release_key is not None else None
    code, issued = enrolment_code(args)
    return CardInputs(gate, code, network, ssh_key, issued, keys)


@dataclass(frozen=True)
class CardInputs:
    gate: str
    code: str  # the enrolment code's text
    network: NetworkConfig
    ssh_key: str | None
    issued: Issued | None = None  # the code is new: recorded in the registry before writing
    release_keys: str | None = None  # the lines of /etc/gatescan/release-keys.pub


def write(args: argparse.Namespace, inputs: CardInputs) -> list[Path]:
    """The bundle (the wheel, the constraints, the dependencies if asked), then the cloud-init
    files, each checked by our models and by cloud-init's schema where cloud-init is here."""
    from server.provision.boot_files import USER_DATA, Card, card_files, write_card
    from server.provision.bundle import (
        AGENT_UNIT,
        UPDATER_UNIT_FILES,
        add_constraints,
        add_wheel,
        build_wheel,
        pip_download,
        wheel_version,
    )
    from server.provision.target import BUNDLE_DIR

    out: Path = args.out
    bundle = out / BUNDLE_DIR
    wheel = add_wheel(args.wheel, bundle) if args.wheel else build_wheel(bundle)
    constraints = add_constraints(bundle)
    if args.with_dependencies:
        pip_download(wheel, constraints, bundle)
    card = Card(
        gate_id=inputs.gate,
        enrolment_code=inputs.code,
        network=inputs.network,
        wheel_name=wheel.name,
        version=wheel_version(wheel),
        ssh_key=inputs.ssh_key,
        offline=args.with_dependencies,
        updater_units=tuple(
            (unit.name, unit.read_text(encoding="utf-8")) for unit in UPDATER_UNIT_FILES
        ),
        release_keys=inputs.release_keys,
    )
    files = card_files(card, AGENT_UNIT.read_text(encoding="utf-8"))
    _schema_check(next(file.text for file in files if file.name == USER_DATA))
    if inputs.issued is not None:
        _record(inputs.gate, inputs.issued)
    return [*write_card(out, files), *sorted(bundle.iterdir())]


def _schema_check(text: str) -> None:
    """cloud-init's own schema over the user-data, when cloud-init is installed here."""
    from firmware_config.errors import ConfigError, Problem
    from server.provision.cloud_config import CloudInitMissingError, cloud_init_schema

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "user-data"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        try:
            verdict = cloud_init_schema(path)
        except CloudInitMissingError as error:
            print(f"gatescan provision: not checked by cloud-init: {error}", file=sys.stderr)
            return
    if not verdict.valid:
        raise ConfigError([Problem("user-data", f"cloud-init schema: {verdict.said}")])
