"""Signed releases (issue 17): what the server's `gatescan release sign` makes and a gate's
`gatescan update` accepts. The contract both sides share; the tar itself is each side's own
(server/release/ writes it, device/update/ reads it).

A release bundle is one uncompressed tar file holding, in this order:

    manifest.json   what the release is: its version, how it is installed, the wire protocol it
                    speaks, and the SHA-256 and size of every payload file
    manifest.sig    {"key_id": ..., "signature": base64}: Ed25519 over SIGNING_CONTEXT and the
                    manifest's exact bytes
    payload/...     the files: for `install: venv`, gatescan's wheel, `constraints.txt` and any
                    dependency wheels (what provisioning's card carries); for `install: tree`,
                    the release folder itself, copied as it is

The signature covers the manifest, and the manifest covers each payload file by its digest: a
changed byte anywhere, a file added or missing, is refused. The gate trusts only the public keys
listed in a file root owns (`/etc/gatescan/release-keys.pub`, one `ed25519:BASE64 NAME` per
line), never one a bundle or the network brings. The version is in the signed manifest, and the
gate compares it with the version asked for and with the one it runs (a downgrade needs a flag),
so an old signed release cannot be replayed as a new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.topics import VERSION as PROTOCOL_VERSION

FORMAT = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PAYLOAD_DIR = "payload"
SIGNING_CONTEXT = b"gatescan release v1\x00"
KEY_PREFIX = "ed25519:"
# A version is numbers with dots and an optional pre-release tag: 0.2.0, 1.0.0rc1. Also a folder
# name under /opt/gatescan/releases/, so nothing else (no '/', no '..').
_VERSION = re.compile(r"(\d{1,6}(?:\.\d{1,6}){1,3})(?:(a|b|rc)(\d{1,6}))?")
_PRE_ORDER = {"a": 0, "b": 1, "rc": 2}
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A payload file's path: relative, plain segments only.
_SEGMENT = re.compile(r"[A-Za-z0-9_.+@=-]{1,200}")
MAX_MANIFEST_BYTES = 1 << 20


class Install(StrEnum):
    VENV = "venv"  # a virtualenv made on the gate, gatescan's wheel installed into it
    TREE = "tree"  # the payload is the release folder: copied as it is


class Refusal(StrEnum):
    """Why a release was refused: each one its own line for the person who pushed it."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    MALFORMED = "malformed"
    TAMPERED = "tampered"
    WRONG_VERSION = "wrong_version"
    DOWNGRADE = "downgrade"
    INCOMPATIBLE = "incompatible"
    NO_KEYS = "no_trusted_keys"
    UNAVAILABLE = "unavailable"  # the bundle could not be read or downloaded


class ReleaseRefused(Exception):
    """The release is not installed; `reason` is the closed set, the message says what to do."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Manifest:
    version: str
    install: Install
    protocol: str  # the wire version the release speaks (protocol/topics.py: VERSION)
    files: Mapping[str, tuple[str, int]]  # payload path -> (sha256 hex, size)

    def to_bytes(self) -> bytes:
        """The manifest as signed: canonical JSON (sorted keys, no spaces), one trailing newline."""
        body = {
            "format": FORMAT,
            "version": self.version,
            "install": self.install.value,
            "protocol": self.protocol,
            "files": {
                name: {"sha256": digest, "size": size}
                for name, (digest, size) in sorted(self.files.items())
            },
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"


def version_key(version: str) -> tuple[tuple[int, ...], int, int]:
    """A version for ordering: 1.0.0a1 < 1.0.0rc1 < 1.0.0 < 1.0.1. ValueError for another form."""
    matched = _VERSION.fullmatch(version)
    if matched is None:
        raise ValueError(f"{version!r} is not a release version (like 0.2.0 or 1.0.0rc1)")
    numbers = tuple(int(part) for part in matched.group(1).split("."))
    numbers = numbers + (0,) * (4 - len(numbers))
    pre = matched.group(2)
    if pre is None:
        return numbers, 3, 0
    return numbers, _PRE_ORDER[pre], int(matched.group(3))


def is_version(text: str) -> bool:
    return _VERSION.fullmatch(text) is not None


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key: what a signature names."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_line(public_key: Ed25519PublicKey, name: str) -> str:
    """One line of a trusted-keys file: `ed25519:BASE64 NAME`."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    label = " ".join(name.split()) or "release-key"
    return f"{KEY_PREFIX}{base64.b64encode(raw).decode('ascii')} {label}"


def parse_trusted_keys(text: str) -> dict[str, Ed25519PublicKey]:
    """{key id: key} of a trusted-keys file; '#' comments and blank lines skipped. ValueError
    naming the line of anything else."""
    keys: dict[str, Ed25519PublicKey] = {}
    for number, line in enumerate(text.splitlines(), 1):
        text_line = line.split("#", 1)[0].strip()
        if not text_line:
            continue
        word = text_line.split()[0]
        if not word.startswith(KEY_PREFIX):
            raise ValueError(f"line {number}: not `{KEY_PREFIX}BASE64 NAME`")
        try:
            raw = base64.b64decode(word.removeprefix(KEY_PREFIX), validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"line {number}: not an Ed25519 public key ({exc})") from None
        keys[key_id(key)] = key
    return keys


def sign_manifest(manifest: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The signature file for these manifest bytes."""
    signature = private_key.sign(SIGNING_CONTEXT + manifest)
    body = {
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"


def verify_manifest(
    manifest: bytes | None, signature: bytes | None, trusted: Mapping[str, Ed25519PublicKey]
) -> Manifest:
    """The manifest, once its signature checks under one of the trusted keys; ReleaseRefused
    saying why not. Nothing in the manifest is read before the signature is checked."""
    if not trusted:
        raise ReleaseRefused(
            Refusal.NO_KEYS,
            "this gate trusts no release key: put the server's public key "
            "(`gatescan release keygen` prints it) in its trusted-keys file",
        )
    if manifest is None or signature is None:
        missing = MANIFEST_NAME if manifest is None else SIGNATURE_NAME
        raise ReleaseRefused(
            Refusal.UNSIGNED,
            f"the bundle has no {missing}: not a signed release (sign it on the server with "
            "`gatescan release sign`)",
        )
    if len(manifest) > MAX_MANIFEST_BYTES:
        raise ReleaseRefused(Refusal.MALFORMED, f"{MANIFEST_NAME} is over 1 MiB")
    try:
        sig = json.loads(signature)
        named = sig["key_id"]
        raw = base64.b64decode(sig["signature"], validate=True)
        if not (isinstance(named, str) and _KEY_ID.fullmatch(named)):
            raise ValueError(named)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ReleaseRefused(
            Refusal.BAD_SIGNATURE, f"{SIGNATURE_NAME} is not a signature file"
        ) from None
    key = trusted.get(named)
    if key is None:
        raise ReleaseRefused(
            Refusal.UNKNOWN_KEY,
            f"signed by key {named}, which this gate does not trust (it trusts "
            f"{', '.join(sorted(trusted))})",
        )
    try:
        key.verify(raw, SIGNING_CONTEXT + manifest)
    except InvalidSignature:
        raise ReleaseRefused(
            Refusal.BAD_SIGNATURE,
            f"the manifest's signature does not verify under key {named}: the manifest was "
            "changed after signing, or signed by another key under that id",
        ) from None
    return parse_manifest(manifest)


def parse_manifest(manifest: bytes) -> Manifest:
    """A signed manifest's fields, checked for form; ReleaseRefused(MALFORMED) otherwise."""
    try:
        body = json.loads(manifest)
        if body["format"] != FORMAT:
            raise ValueError(f"format {body['format']!r}, this gate reads {FORMAT}")
        version = body["version"]
        if not (isinstance(version, str) and is_version(version)):
            raise ValueError(f"version {version!r}")
        install = Install(body["install"])
        protocol = body["protocol"]
        if not isinstance(protocol, str):
            raise ValueError("protocol")
        files: dict[str, tuple[str, int]] = {}
        for name, entry in body["files"].items():
            check_payload_path(name)
            digest, size = entry["sha256"], entry["size"]
            if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
                raise ValueError(f"sha256 of {name}")
            if not (isinstance(size, int) and size >= 0):
                raise ValueError(f"size of {name}")
            files[name] = (digest, size)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReleaseRefused(Refusal.MALFORMED, f"{MANIFEST_NAME} is malformed: {exc}") from None
    return Manifest(version=version, install=install, protocol=protocol, files=files)


def check_payload_path(name: str) -> None:
    """A payload file's name: `payload/` then plain relative segments; ValueError otherwise."""
    parts = name.split("/")
    if len(parts) < 2 or parts[0] != PAYLOAD_DIR:
        raise ValueError(f"{name!r} is not under {PAYLOAD_DIR}/")
    for part in parts[1:]:
        if part in (".", "..") or not _SEGMENT.fullmatch(part):
            raise ValueError(f"{name!r} is not a plain relative path")


def check_acceptable(
    manifest: Manifest, *, wanted: str, running: str | None, allow_downgrade: bool
) -> None:
    """The release asked for, not older than the one running unless allowed, speaking this
    gate's protocol: ReleaseRefused otherwise."""
    if manifest.version != wanted:
        raise ReleaseRefused(
            Refusal.WRONG_VERSION,
            f"the bundle is signed as version {manifest.version}, not {wanted} as asked",
        )
    if manifest.protocol != PROTOCOL_VERSION:
        raise ReleaseRefused(
            Refusal.INCOMPATIBLE,
            f"release {manifest.version} speaks protocol {manifest.protocol}; this gate's "
            f"server speaks {PROTOCOL_VERSION}",
        )
    if (
        running is not None
        and is_version(running)
        and not allow_downgrade
        and version_key(manifest.version) < version_key(running)
    ):
        raise ReleaseRefused(
            Refusal.DOWNGRADE,
            f"{manifest.version} is older than {running}, which this gate runs: going back "
            "needs --allow-downgrade",
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
