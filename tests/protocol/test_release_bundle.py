"""The signed release contract: the version order, the trusted-keys file, the signature over the
manifest's exact bytes, and the refusals a gate shows."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.release_bundle import (
    Install,
    Manifest,
    Refusal,
    ReleaseRefused,
    check_acceptable,
    key_id,
    parse_trusted_keys,
    public_key_line,
    sign_manifest,
    verify_manifest,
    version_key,
)
from protocol.topics import VERSION


def manifest(version: str = "0.2.0", protocol: str = VERSION) -> Manifest:
    return Manifest(version, Install.TREE, protocol, {"payload/bin/gatescan": ("ab" * 32, 10)})


def test_versions_order_as_releases_do() -> None:
    ordered = ["0.1.0", "0.1.1", "0.2.0a1", "0.2.0b2", "0.2.0rc1", "0.2.0", "0.10.0", "1.0"]
    assert sorted(ordered, key=version_key) == ordered
    assert version_key("1.0") == version_key("1.0.0")
    for bad in ("../x", "1", "1.0-dev", "", "1.0.0.0.0", "v1.0"):
        with pytest.raises(ValueError):
            version_key(bad)


def test_a_signed_manifest_verifies_under_its_key_only() -> None:
    key = Ed25519PrivateKey.generate()
    trusted = parse_trusted_keys(f"# ours\n{public_key_line(key.public_key(), 'site a')}\n")
    assert list(trusted) == [key_id(key.public_key())]
    body = manifest().to_bytes()
    assert verify_manifest(body, sign_manifest(body, key), trusted) == manifest()
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ReleaseRefused) as unknown:
        verify_manifest(body, sign_manifest(body, other), trusted)
    assert unknown.value.reason is Refusal.UNKNOWN_KEY
    with pytest.raises(ReleaseRefused) as changed:
        verify_manifest(body.replace(b"0.2.0", b"0.3.0"), sign_manifest(body, key), trusted)
    assert changed.value.reason is Refusal.BAD_SIGNATURE
    with pytest.raises(ReleaseRefused) as unsigned:
        verify_manifest(body, None, trusted)
    assert unsigned.value.reason is Refusal.UNSIGNED
    with pytest.raises(ReleaseRefused) as untrusting:
        verify_manifest(body, sign_manifest(body, key), {})
    assert untrusting.value.reason is Refusal.NO_KEYS


def test_a_signed_manifest_with_a_path_out_of_the_payload_is_malformed() -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {key_id(key.public_key()): key.public_key()}
    for name in ("payload/../../etc/passwd", "/etc/passwd", "manifest.json", "payload/a//b"):
        body = Manifest("0.2.0", Install.TREE, VERSION, {name: ("ab" * 32, 1)}).to_bytes()
        with pytest.raises(ReleaseRefused) as refused:
            verify_manifest(body, sign_manifest(body, key), trusted)
        assert refused.value.reason is Refusal.MALFORMED, name


def test_a_trusted_keys_file_with_a_bad_line_names_it() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_trusted_keys("# comment\nssh-ed25519 AAAA me\n")
    with pytest.raises(ValueError, match="line 1: not an Ed25519 public key"):
        parse_trusted_keys("ed25519:AAAA short\n")


def test_the_version_asked_the_running_one_and_the_protocol_are_checked() -> None:
    check_acceptable(manifest(), wanted="0.2.0", running="0.1.0", allow_downgrade=False)
    check_acceptable(manifest(), wanted="0.2.0", running=None, allow_downgrade=False)
    cases = [
        (manifest(), "0.3.0", "0.1.0", False, Refusal.WRONG_VERSION),
        (manifest(), "0.2.0", "0.3.0", False, Refusal.DOWNGRADE),
        (manifest(protocol="v2"), "0.2.0", "0.1.0", False, Refusal.INCOMPATIBLE),
    ]
    for signed, wanted, running, allow, reason in cases:
        with pytest.raises(ReleaseRefused) as refused:
            check_acceptable(signed, wanted=wanted, running=running, allow_downgrade=allow)
        assert refused.value.reason is reason
    check_acceptable(manifest(), wanted="0.2.0", running="0.3.0", allow_downgrade=True)
