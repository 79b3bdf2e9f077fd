"""`gatescan provision --gate ID --out DIR`: the boot-partition files of a new gate's SD card.

DIR gets `user-data`, `network-config` and `meta-data` (cloud-init, which Raspberry Pi OS
Trixie images run from the boot partition on first boot) and `gatescan/`, the bundle: the
gatescan wheel built from this tree and the constraints that pin its dependencies to the OS's.
Copy DIR's contents onto the card's boot partition, or give the files to rpi-imager
(`--cloudinit-userdata`, `--cloudinit-networkconfig`): docs/operations.md, "From a blank SD card".

Secrets come from files: the Wi-Fi passphrase (--wifi-psk-file) and the enrolment code
(--enrolment-code-file, the text `gatescan gate add` printed). The files that hold them are
written 0600.

Exit codes: 0 written; 1 the wheel could not be built or the files failed cloud-init's check;
2 bad input (the message says which).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.options import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Commands, add_config_option

if TYPE_CHECKING:
    from protocol.enrolment import EnrolmentCode
    from server.provision.network_config import NetworkConfig

DEFAULT_COUNTRY = "VN"


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
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
        help="the enrolment code `gatescan gate add` printed for this gate (kept 0600 on the"
        " card, used once)",
    )
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
        "--with-dependencies",
        action="store_true",
        help="also put every dependency's wheel for the Pi in the bundle (downloads them now"
        " from PyPI), so that the gate installs without a package index",
    )
    add_config_option(provision)
    provision.set_defaults(run=run)


def enrolment_code(args: argparse.Namespace) -> EnrolmentCode:
    """The gate's enrolment code. Today: the file the technician gives. The registry's lookup
    (the pending gate `gate add` registered, found by --gate in the --config server's database)
    replaces this one function. Raises ProvisionInputError."""
    from server.provision.inputs import ProvisionInputError, enrolment_code_file

    if args.enrolment_code_file is None:
        raise ProvisionInputError(
            "--enrolment-code-file FILE is needed: the code `gatescan gate add` printed for"
            f" {args.gate}"
        )
    return enrolment_code_file(args.enrolment_code_file)


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
    try:
        check_source_tree()
        written = write(args, card)
    except (BundleError, ConfigError) as error:
        print(f"gatescan provision: {error}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(path)
    return EXIT_OK


def read_card(args: argparse.Namespace) -> CardInputs:
    """Every input, read and checked before anything is built or written."""
    from server.provision.inputs import (
        ProvisionInputError,
        gate_id,
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
    code = enrolment_code(args)
    return CardInputs(gate, code.text(), network, ssh_key)


@dataclass(frozen=True)
class CardInputs:
    gate: str
    code: str  # the enrolment code's text
    network: NetworkConfig
    ssh_key: str | None


def write(args: argparse.Namespace, inputs: CardInputs) -> list[Path]:
    """The bundle (the wheel, the constraints, the dependencies if asked), then the cloud-init
    files, each checked by our models and by cloud-init's schema where cloud-init is here."""
    from server.provision.boot_files import USER_DATA, Card, card_files, write_card
    from server.provision.bundle import (
        AGENT_UNIT,
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
    )
    files = card_files(card, AGENT_UNIT.read_text(encoding="utf-8"))
    _schema_check(next(file.text for file in files if file.name == USER_DATA))
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
