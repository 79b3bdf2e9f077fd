"""The release key and signed bundles (protocol/release_bundle.py is the contract).

The key is made once per installation and kept on the server: the private key as PKCS#8 PEM,
0600, in a file of its own (never in a bundle, never on a gate); the public key as one line of
a gate's trusted-keys file. A bundle is a tar written whole beside its target and renamed over
it: the manifest first, its signature, then the payload files in the manifest's order.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from protocol.release_bundle import (
    MANIFEST_NAME,
    PAYLOAD_DIR,
    SIGNATURE_NAME,
    Install,
    Manifest,
    check_payload_path,
    is_version,
    public_key_line,
    sha256_hex,
    sign_manifest,
)
from protocol.topics import VERSION as PROTOCOL_VERSION
from server.provision.bundle import add_constraints, build_wheel, wheel_version

PRIVATE_KEY_NAME = "release-key.pem"
PUBLIC_KEY_NAME = "release-key.pub"


class ReleaseError(RuntimeError):
    """A release could not be made or signed; the message says why."""


def keygen(folder: Path, name: str, *, force: bool = False) -> tuple[Path, str]:
    """A new release key in `folder`: the private key (0600) and the public key's line (0644).
    Refuses to replace a key unless `force`: every gate trusts the old one."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = folder / PRIVATE_KEY_NAME
    if private.exists() and not force:
        raise ReleaseError(
            f"{private} exists: the gates trust its public key; --force makes a new one "
            "(then every gate needs the new public key)"
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new(private, pem, 0o600)
    line = public_key_line(key.public_key(), name)
    _write_new(folder / PUBLIC_KEY_NAME, (line + "\n").encode("ascii"), 0o644)
    return private, line


def _write_new(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The release key; ReleaseError if it is not one, or if others may read it."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read the release key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ReleaseError(f"{path} is readable by others ({mode & 0o777:04o}): chmod 600 it")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"{path} is not a release key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path} is not an Ed25519 key")
    return key


def payload_files(folder: Path) -> dict[str, Path]:
    """{`payload/REL`: file} of every file under `folder`; ReleaseError for a name the manifest
    cannot carry or anything but files, folders and links within the folder."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ReleaseError(f"{path}: a symbolic link; a payload holds files only")
        if path.is_dir():
            continue
        if not path.is_file():
            raise ReleaseError(f"{path}: not a regular file")
        name = f"{PAYLOAD_DIR}/{path.relative_to(folder).as_posix()}"
        try:
            check_payload_path(name)
        except ValueError as exc:
            raise ReleaseError(str(exc)) from None
        found[name] = path
    if not found:
        raise ReleaseError(f"{folder} holds no files")
    return found


def sign_bundle(
    payload: Path, version: str, install: Install, key: Ed25519PrivateKey, out: Path
) -> Manifest:
    """The signed bundle of `payload`'s files as release `version`, written to `out` whole."""
    if not is_version(version):
        raise ReleaseError(f"--version {version!r}: use numbers with dots, like 0.2.0")
    files = payload_files(payload)
    if install is Install.VENV and not any(
        name.startswith(f"{PAYLOAD_DIR}/gatescan-{version}-") and name.endswith(".whl")
        for name in files
    ):
        raise ReleaseError(f"a venv release holds gatescan-{version}-*.whl; {payload} has none")
    contents = {name: path.read_bytes() for name, path in files.items()}
    manifest = Manifest(
        version=version,
        install=install,
        protocol=PROTOCOL_VERSION,
        files={name: (sha256_hex(data), len(data)) for name, data in contents.items()},
    )
    manifest_bytes = manifest.to_bytes()
    members = [
        (MANIFEST_NAME, manifest_bytes),
        (SIGNATURE_NAME, sign_manifest(manifest_bytes, key)),
        *sorted(contents.items()),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=False) as raw:
        temp = Path(raw.name)
        try:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o755 if _executable(files.get(name)) else 0o644
                    info.mtime = 0
                    tar.addfile(info, io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    os.chmod(temp, 0o644)
    os.replace(temp, out)
    return manifest


def _executable(path: Path | None) -> bool:
    return path is not None and bool(path.stat().st_mode & 0o100)


def make_release(key: Ed25519PrivateKey, out_dir: Path, wheel: Path | None = None) -> Path:
    """The signed venv release of this source tree (or of a wheel built elsewhere): gatescan's
    wheel and the Pi's constraints, as provisioning's card carries them; `out_dir`/
    gatescan-VERSION.release.tar."""
    with tempfile.TemporaryDirectory(prefix="gatescan-release-") as folder:
        payload = Path(folder) / "payload"
        payload.mkdir()
        if wheel is None:
            built = build_wheel(payload)
        else:
            built = Path(shutil.copy2(wheel, payload / wheel.name))
        add_constraints(payload)
        version = wheel_version(built)
        out = out_dir / bundle_name(version)
        sign_bundle(payload, version, Install.VENV, key, out)
    return out


def bundle_name(version: str) -> str:
    return f"gatescan-{version}.release.tar"
