"""The release key (`gatescan release keygen`) and the bundles signed with it."""

from __future__ import annotations

import stat
import tarfile
from pathlib import Path

import pytest

from protocol.release_bundle import Install, parse_trusted_keys
from server.release.signing import (
    ReleaseError,
    keygen,
    load_private_key,
    make_release,
    sign_bundle,
)
from tests.support.cli import run_gatescan


def test_keygen_keeps_the_private_key_0600_and_never_replaces_it_unasked(tmp_path: Path) -> None:
    private, line = keygen(tmp_path / "keys", "hq releases")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert line.endswith(" hq releases")
    (key_id,) = parse_trusted_keys(line)
    with pytest.raises(ReleaseError, match="the gates trust its public key"):
        keygen(tmp_path / "keys", "again")
    assert load_private_key(private)  # unchanged, still loads
    _, new_line = keygen(tmp_path / "keys", "again", force=True)
    assert list(parse_trusted_keys(new_line)) != [key_id]


def test_a_release_key_others_may_read_is_refused(tmp_path: Path) -> None:
    private, _ = keygen(tmp_path / "keys", "k")
    private.chmod(0o644)
    with pytest.raises(ReleaseError, match="readable by others"):
        load_private_key(private)


def test_a_bundle_holds_the_manifest_the_signature_and_the_payload_but_no_key(
    tmp_path: Path,
) -> None:
    private, _ = keygen(tmp_path / "keys", "k")
    payload = tmp_path / "payload"
    (payload / "bin").mkdir(parents=True)
    (payload / "bin" / "gatescan").write_text("#!/bin/sh\n")
    (payload / "bin" / "gatescan").chmod(0o755)
    out = tmp_path / "out" / "r.tar"
    sign_bundle(payload, "0.2.0", Install.TREE, load_private_key(private), out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert tar.getmember("payload/bin/gatescan").mode == 0o755
        everything = b"".join(
            data.read() for member in tar if (data := tar.extractfile(member)) is not None
        )
    assert names == ["manifest.json", "manifest.sig", "payload/bin/gatescan"]
    assert private.read_bytes().splitlines()[1] not in everything
    (payload / "link").symlink_to("/etc/passwd")
    with pytest.raises(ReleaseError, match="a symbolic link"):
        sign_bundle(payload, "0.2.0", Install.TREE, load_private_key(private), out)


def test_a_venv_release_needs_its_wheel(tmp_path: Path) -> None:
    private, _ = keygen(tmp_path / "keys", "k")
    key = load_private_key(private)
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "constraints.txt").write_text("numpy==2.2.4\n")
    with pytest.raises(ReleaseError, match=r"gatescan-0.2.0-\*.whl"):
        sign_bundle(payload, "0.2.0", Install.VENV, key, tmp_path / "r.tar")
    wheel = tmp_path / "gatescan-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: the bundle does not open it
    out = make_release(key, tmp_path / "out", wheel)
    assert out.name == "gatescan-0.2.0.release.tar"
    with tarfile.open(out) as tar:
        assert "payload/gatescan-0.2.0-py3-none-any.whl" in tar.getnames()
        assert "payload/constraints.txt" in tar.getnames()


def test_the_commands_make_and_sign(tmp_path: Path) -> None:
    made = run_gatescan(["release", "keygen", "--dir", str(tmp_path / "keys")])
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-1].startswith("ed25519:")
    again = run_gatescan(["release", "keygen", "--dir", str(tmp_path / "keys")])
    assert again.returncode == 2 and "--force makes a new one" in again.stderr
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "file").write_text("x")
    key = str(tmp_path / "keys" / "release-key.pem")
    out = str(tmp_path / "r.tar")
    signed = run_gatescan(
        [
            "release",
            "sign",
            str(payload),
            "--version",
            "0.2.0",
            "--install",
            "tree",
            "--key",
            key,
            "--out",
            out,
        ]
    )
    assert signed.returncode == 0, signed.stderr
    assert "release 0.2.0, 1 files, signed" in signed.stdout
    bad = run_gatescan(
        [
            "release",
            "sign",
            str(payload),
            "--version",
            "../1",
            "--install",
            "tree",
            "--key",
            key,
            "--out",
            out,
        ]
    )
    assert bad.returncode == 2 and "use numbers with dots" in bad.stderr
