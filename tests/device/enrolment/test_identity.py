"""The identity kept in the data dir: 0600 files, whole or absent."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from device.enrolment.identity import (
    CA_FILE,
    GRANT_FILE,
    IdentityError,
    identity_dir,
    load_identity,
    store_identity,
)
from protocol.enrolment import EnrolmentGrant
from protocol.verdicts import Direction

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
GRANT = EnrolmentGrant(
    device_id="gate-lobby-1",
    site_id="site-1",
    direction=Direction.OUT,
    broker_url="mqtts://broker.lan:8883",
    username="gate-lobby-1",
    password="s" * 20,
    ca_pem=CA_PEM,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_stored_identity_loads_back_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    stored = store_identity(tmp_path, GRANT)
    loaded = load_identity(tmp_path)
    assert loaded == stored and loaded is not None
    assert loaded.grant == GRANT
    assert loaded.ca_file.read_text() == CA_PEM
    folder = identity_dir(tmp_path)
    assert (mode(folder / GRANT_FILE), mode(folder / CA_FILE), mode(folder)) == (0o600,) * 2 + (
        0o700,
    )
    assert sorted(p.name for p in folder.iterdir()) == [CA_FILE, GRANT_FILE]  # no temp left


def test_no_identity_folder_means_not_enrolled(tmp_path: Path) -> None:
    assert load_identity(tmp_path) is None


def test_a_damaged_grant_is_kept_aside_and_the_gate_is_not_enrolled(tmp_path: Path) -> None:
    store_identity(tmp_path, GRANT)
    grant_file = identity_dir(tmp_path) / GRANT_FILE
    grant_file.write_text('{"device_id": "gate-lobby-1", "pass')  # cut short by hand
    assert load_identity(tmp_path) is None
    assert not grant_file.exists()
    assert [p.name for p in identity_dir(tmp_path).glob(f"{GRANT_FILE}.damaged-*")]


def test_a_grant_without_its_ca_file_gets_it_back_from_the_grant(tmp_path: Path) -> None:
    store_identity(tmp_path, GRANT)
    (identity_dir(tmp_path) / CA_FILE).unlink()
    loaded = load_identity(tmp_path)
    assert loaded is not None and loaded.ca_file.read_text() == CA_PEM


def test_a_disk_that_refuses_the_write_leaves_no_grant(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "identity").write_text("a file where the folder should be")
    with pytest.raises(IdentityError):
        store_identity(data_dir, GRANT)
    assert load_identity(data_dir) is None


def test_a_ca_file_changed_by_hand_is_written_again_from_the_grant(tmp_path: Path) -> None:
    store_identity(tmp_path, GRANT)
    (identity_dir(tmp_path) / CA_FILE).write_text("garbage")
    loaded = load_identity(tmp_path)
    assert loaded is not None and loaded.ca_file.read_text() == CA_PEM
    assert mode(loaded.ca_file) == 0o600
