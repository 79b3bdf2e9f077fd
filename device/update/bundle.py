"""A release bundle read on the gate: its signature checked before anything else is read, then
each payload file unpacked into a folder of the updater's and checked against the manifest.

Only what the contract names is accepted: `manifest.json`, `manifest.sig` and regular files
under `payload/` with plain names (no links, devices, absolute paths or `..`), each once. A file
the manifest does not list, one it lists that is missing, and one whose digest or size differs
are `tampered`; the folder is then removed by the caller (nothing is installed).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.release_bundle import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    Manifest,
    Refusal,
    ReleaseRefused,
    check_payload_path,
    verify_manifest,
)

MAX_BUNDLE_BYTES = 1 << 30  # 1 GiB: a release with every dependency wheel is ~100 MB
_CHUNK = 1 << 20


def read_signed_manifest(bundle: Path, trusted: Mapping[str, Ed25519PublicKey]) -> Manifest:
    """The bundle's manifest, verified; ReleaseRefused (`malformed` for a file that is not a
    tar at all) otherwise."""
    manifest: bytes | None = None
    signature: bytes | None = None
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            for member in tar:
                if member.name not in (MANIFEST_NAME, SIGNATURE_NAME):
                    continue
                if not member.isfile() or member.size > MAX_MANIFEST_BYTES:
                    raise ReleaseRefused(Refusal.MALFORMED, f"{member.name} is not a small file")
                data = _read_member(tar, member)
                if member.name == MANIFEST_NAME:
                    if manifest is not None:
                        raise ReleaseRefused(Refusal.MALFORMED, f"two {MANIFEST_NAME}")
                    manifest = data
                else:
                    if signature is not None:
                        raise ReleaseRefused(Refusal.MALFORMED, f"two {SIGNATURE_NAME}")
                    signature = data
    except (tarfile.TarError, EOFError) as exc:
        raise ReleaseRefused(
            Refusal.MALFORMED, f"not a release bundle (a tar file): {exc}"
        ) from None
    return verify_manifest(manifest, signature, trusted)


def unpack_payload(bundle: Path, manifest: Manifest, into: Path) -> Path:
    """The payload files the (verified) manifest lists, written under `into`/payload/ with their
    digests checked; the payload folder. ReleaseRefused(TAMPERED) on any difference."""
    seen: set[str] = set()
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            for member in tar:
                if member.name in (MANIFEST_NAME, SIGNATURE_NAME):
                    continue
                _check_member(member, manifest, seen)
                _write_member(tar, member, manifest, into)
                seen.add(member.name)
    except (tarfile.TarError, EOFError) as exc:
        raise ReleaseRefused(Refusal.TAMPERED, f"the bundle is cut short: {exc}") from None
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise ReleaseRefused(
            Refusal.TAMPERED, f"the bundle lacks {len(missing)} signed file(s): {missing[0]}"
        )
    return into / "payload"


def _check_member(member: tarfile.TarInfo, manifest: Manifest, seen: set[str]) -> None:
    if member.isdir():
        raise ReleaseRefused(Refusal.TAMPERED, f"{member.name!r}: folders are not members")
    try:
        check_payload_path(member.name)
    except ValueError as exc:
        raise ReleaseRefused(Refusal.TAMPERED, str(exc)) from None
    if not member.isfile():
        raise ReleaseRefused(Refusal.TAMPERED, f"{member.name}: not a regular file")
    if member.name not in manifest.files:
        raise ReleaseRefused(Refusal.TAMPERED, f"{member.name} is not in the signed manifest")
    if member.name in seen:
        raise ReleaseRefused(Refusal.TAMPERED, f"{member.name} is in the bundle twice")


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, manifest: Manifest, into: Path
) -> None:
    digest, size = manifest.files[member.name]
    if member.size != size:
        raise ReleaseRefused(
            Refusal.TAMPERED, f"{member.name} is {member.size} bytes, signed as {size}"
        )
    target = into.joinpath(*member.name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        raise ReleaseRefused(Refusal.TAMPERED, f"{member.name}: no content")
    hasher = hashlib.sha256()
    mode = 0o755 if member.mode & 0o100 else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
    os.chmod(target, mode)
    if hasher.hexdigest() != digest:
        raise ReleaseRefused(
            Refusal.TAMPERED, f"{member.name}'s SHA-256 differs from the signed manifest's"
        )


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    source = tar.extractfile(member)
    return b"" if source is None else source.read()
