"""The sample material is what it claims: exact codes, valid fictional cards, ordered files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.decode.base import DecodedCode
from device.decode.zbar import PyzbarDecoder
from device.verdict.credentials import Credential, parse_credential
from gatescan.testing.samples import (
    blank_frame,
    cccd_payload,
    render_code,
    sample_cards,
    sample_people,
    write_replay_folder,
)
from protocol.verdicts import CredentialType


def test_cccd_payload_joins_seven_fields_in_card_order() -> None:
    payload = cccd_payload(
        "079085004321", "Trần Văn Đức", "03111985", "Nam", "Quận 3", "22072021", "023456789"
    )
    assert payload == "079085004321|023456789|Trần Văn Đức|03111985|Nam|Quận 3|22072021".encode()


def test_six_field_cccd_payload_has_no_old_id() -> None:
    payload = cccd_payload(
        "001190012345", "Uyên", "14021990", "Nữ", "Hà Nội", "10052021", six_field=True
    )
    assert payload.decode().split("|") == [
        "001190012345",
        "Uyên",
        "14021990",
        "Nữ",
        "Hà Nội",
        "10052021",
    ]
    with pytest.raises(ValueError, match="no old ID"):
        cccd_payload(
            "001190012345", "Uyên", "1", "Nữ", "x", "2", old_id="013456789", six_field=True
        )


def test_sample_people_are_distinct_valid_cards_with_vietnamese_names() -> None:
    cards = sample_cards()
    assert len({card.id12 for card in cards}) == len(cards) >= 8
    assert any(not card.name.isascii() for card in cards)
    for payload in sample_people() + [card.payload(six_field=True) for card in cards]:
        parsed = parse_credential(payload)
        assert isinstance(parsed, Credential), payload.decode()
        assert parsed.credential_type is CredentialType.CCCD


def test_render_code_puts_the_code_where_asked_and_refuses_what_does_not_fit() -> None:
    frame = render_code(b"left", frame_size=(400, 200), center=(100, 100), background=180)
    assert frame.shape == (200, 400) and frame.dtype == np.uint8
    assert frame[:, 250:].min() == 180  # the right half is untouched background
    assert PyzbarDecoder().decode(frame) == [DecodedCode(b"left")]
    with pytest.raises(ValueError, match="does not fit"):
        render_code(b"x" * 500, frame_size=(100, 100))


def test_noise_is_reproducible_from_the_seed() -> None:
    assert np.array_equal(
        blank_frame((64, 48), noise=10, seed=3), blank_frame((64, 48), noise=10, seed=3)
    )
    assert not np.array_equal(
        blank_frame((64, 48), noise=10, seed=3), blank_frame((64, 48), noise=10, seed=4)
    )
    assert np.all(blank_frame((64, 48)) == 255)


def test_replay_folder_holds_numbered_pngs_with_the_payloads_in_order(tmp_path: Path) -> None:
    payloads = [sample_people()[0], None, "Lý Ơn".encode()]
    paths = write_replay_folder(tmp_path / "replay", payloads, frame_size=(480, 360), module_px=3)
    assert [path.name for path in paths] == ["0001.png", "0002.png", "0003.png"]
    assert sorted((tmp_path / "replay").iterdir()) == paths
    decoder = PyzbarDecoder()
    for path, payload in zip(paths, payloads, strict=True):
        read = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        assert read is not None
        frame = np.asarray(read, dtype=np.uint8)
        assert frame.shape == (360, 480)
        expected = [] if payload is None else [DecodedCode(payload)]
        assert decoder.decode(frame) == expected
