"""What a technician gives `gatescan provision`, each read once and checked, with an error that
says what to fix: the gate id (also the Pi's hostname), the Wi-Fi passphrase file, an SSH public
key, the enrolment code. Secrets come from files, never from the command line; no message here
repeats one."""

from __future__ import annotations

import base64
import binascii
import re
import struct
from pathlib import Path

from firmware_config.schema import read_secret
from protocol.enrolment import EnrolmentCode, EnrolmentCodeError, parse_enrolment_code
from protocol.release_bundle import parse_trusted_keys
from protocol.topics import DEVICE_ID_PATTERN

# A hostname label (RFC 1123) that is also a device id: letters, digits and '-'.
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MAX_FILE = 64 * 1024


class ProvisionInputError(ValueError):
    """An argument or a file the technician must fix; the message says which and why."""


def gate_id(text: str) -> str:
    """The gate id, which is also the Pi's hostname: 1 to 63 letters, digits and '-'."""
    if not _DEVICE_ID.fullmatch(text):
        raise ProvisionInputError(
            f"--gate {text!r} is not a gate id: 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit (no '/', no spaces)"
        )
    if not _HOSTNAME.fullmatch(text):
        raise ProvisionInputError(
            f"--gate {text!r} is also the Pi's hostname, so it may hold only letters, digits"
            " and '-' (not at either end), at most 63 characters"
        )
    return text


def wifi_ssid(text: str) -> str:
    """A Wi-Fi network's name: 1 to 32 bytes (UTF-8), as 802.11 allows."""
    if not 1 <= len(text.encode("utf-8")) <= 32:
        raise ProvisionInputError(f"--wifi-ssid {text!r}: a Wi-Fi name is 1 to 32 bytes long")
    return text


def wifi_country(text: str) -> str:
    """The Wi-Fi regulatory domain: an ISO 3166 country code, two capital letters ('VN')."""
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise ProvisionInputError(
            f"--wifi-country {text!r}: two capital letters, the country's ISO code (e.g. VN)"
        )
    return text


def _read_text(path: Path, flag: str) -> str:
    try:
        if path.stat().st_size > MAX_FILE:
            raise ProvisionInputError(f"{flag} {path}: larger than {MAX_FILE} bytes")
        return read_secret(path)
    except FileNotFoundError:
        raise ProvisionInputError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise ProvisionInputError(f"{flag} {path}: a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ProvisionInputError(f"{flag} {path}: cannot read it: {reason}") from None


def wifi_psk(path: Path) -> str:
    """The Wi-Fi passphrase: the file's text without its line end (checked by WPA2's rules when
    the network config is made)."""
    psk = _read_text(path, "--wifi-psk-file")
    if not psk:
        raise ProvisionInputError(f"--wifi-psk-file {path}: the file is empty")
    return psk


def release_keys(path: Path) -> str:
    """The release keys a gate is to trust (`gatescan release keygen`'s release-key.pub): the
    file's lines, checked to be `ed25519:BASE64 NAME` lines, at least one. A private key is
    refused by name."""
    text = _read_text(path, "--release-key")
    if "PRIVATE KEY" in text:
        raise ProvisionInputError(
            f"--release-key {path} is a private key: give release-key.pub; the release key's"
            " private half stays on the server"
        )
    try:
        keys = parse_trusted_keys(text)
    except ValueError as exc:
        raise ProvisionInputError(f"--release-key {path}: {exc}") from None
    if not keys:
        raise ProvisionInputError(f"--release-key {path} holds no key")
    return text if text.endswith("\n") else text + "\n"


def ssh_public_key(path: Path) -> str:
    """One OpenSSH public key line ('ssh-ed25519 AAAA... comment'), checked to be one: its
    type, and base64 data that starts with the same type. A private key is refused by name."""
    text = _read_text(path, "--ssh-key")
    if "PRIVATE KEY" in text:
        raise ProvisionInputError(
            f"--ssh-key {path} is a private key: give its public half (the .pub file);"
            " a private key never goes on a card"
        )
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise ProvisionInputError(
            f"--ssh-key {path}: expected one public key line, found {len(lines)}"
        )
    fields = lines[0].split()
    kind = fields[0]
    if kind not in _KEY_TYPES or len(fields) < 2:
        raise ProvisionInputError(
            f"--ssh-key {path} is not an OpenSSH public key (a line such as"
            " 'ssh-ed25519 AAAA... you@laptop')"
        )
    try:
        blob = base64.b64decode(fields[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        named = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        named = ""
    if named != kind:
        raise ProvisionInputError(f"--ssh-key {path}: the key data is damaged (not {kind})")
    return " ".join(fields)


def enrolment_code_file(path: Path) -> EnrolmentCode:
    """The enrolment code `gatescan gate add` printed, from a file, checked by the contract."""
    text = _read_text(path, "--enrolment-code-file")
    try:
        return parse_enrolment_code(text)
    except EnrolmentCodeError as error:
        raise ProvisionInputError(f"--enrolment-code-file {path}: {error}") from None
