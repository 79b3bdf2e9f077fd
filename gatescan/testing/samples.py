"""QR codes drawn on grey frames, and fictional CCCD cards: test, benchmark and demo material.

Codes are written in byte mode with exactly the bytes given (segno, no ECI header, no
re-encoding), so a decoder that returns anything else is wrong. segno and OpenCV are imported
only where they are used.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from device.decode.base import Frame
from device.verdict.events import EventDraft
from protocol.event_ids import new_event_id
from protocol.messages import Event

FrameSize = tuple[int, int]  # (width, height), as cameras are described
Point = tuple[int, int]  # (x, y)


def blank_frame(
    frame_size: FrameSize = (1280, 720), noise: float = 0.0, seed: int = 0, background: int = 255
) -> Frame:
    """A frame with no code; `noise` is the standard deviation of the pixel noise (grey levels)."""
    width, height = frame_size
    return _add_noise(np.full((height, width), background, dtype=np.uint8), noise, seed)


def code_modules(data: bytes, border: int = 4, eci: str | None = None) -> Frame:
    """The code as a matrix, one pixel per module: 0 dark, 255 light, with a light border.

    `eci` names a charset to declare in an ECI header (to test ECI handling); segno writes none
    for "iso-8859-1", the standard's default.
    """
    try:
        segno: Any = importlib.import_module("segno")
    except ImportError:
        raise ImportError("generating QR codes needs segno: pip install 'gatescan[demo]'") from None
    # mode="byte": the symbol carries these very bytes, never re-encoded; micro=False keeps it a
    # classic QR code, the kind every decoder reads.
    qr = segno.make(
        bytes(data), mode="byte", micro=False, error="m", encoding=eci, eci=eci is not None
    )
    dark = np.array(qr.matrix, dtype=bool)
    modules = np.where(dark, 0, 255).astype(np.uint8)
    return np.pad(modules, border, constant_values=255)


def draw_code(
    frame: Frame,
    data: bytes,
    *,
    module_px: int = 6,
    center: Point | None = None,
    border: int = 4,
    eci: str | None = None,
) -> Frame:
    """A copy of `frame` with a QR code of `data` drawn at `center` (default: the middle)."""
    if module_px < 1:
        raise ValueError("module_px must be at least 1")
    modules = code_modules(data, border, eci)
    image = np.repeat(np.repeat(modules, module_px, 0), module_px, 1)
    height, width = frame.shape
    x, y = center if center is not None else (width // 2, height // 2)
    top, left = y - image.shape[0] // 2, x - image.shape[1] // 2
    if top < 0 or left < 0 or top + image.shape[0] > height or left + image.shape[1] > width:
        raise ValueError(
            f"a code of {image.shape[1]} px does not fit in a {width}x{height} frame at ({x}, {y})"
        )
    drawn = frame.copy()
    drawn[top : top + image.shape[0], left : left + image.shape[1]] = image
    return drawn


def render_code(
    data: bytes,
    *,
    frame_size: FrameSize = (1280, 720),
    module_px: int = 6,
    center: Point | None = None,
    border: int = 4,
    background: int = 255,
    noise: float = 0.0,
    seed: int = 0,
    eci: str | None = None,
) -> Frame:
    """A frame of `frame_size` (width, height) showing one QR code of exactly `data`.

    `noise` is the standard deviation of Gaussian pixel noise in grey levels, drawn from `seed`.
    """
    plain = blank_frame(frame_size, background=background)
    drawn = draw_code(plain, data, module_px=module_px, center=center, border=border, eci=eci)
    return _add_noise(drawn, noise, seed)


def _add_noise(frame: Frame, noise: float, seed: int) -> Frame:
    if noise <= 0:
        return frame
    rng = np.random.default_rng(seed)
    noisy = frame.astype(np.float32) + rng.normal(0.0, noise, frame.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def cccd_payload(
    id12: str,
    name: str,
    dob: str,
    gender: str,
    address: str,
    issued: str,
    old_id: str = "",
    six_field: bool = False,
) -> bytes:
    """The QR payload of a chip citizen ID card (UTF-8, fields joined by "|").

    7 fields: ID|old ID|name|DOB ddmmyyyy|gender|address|issue date ddmmyyyy; the 6-field variant
    has no old ID. Fields are written as given, so tests can build malformed cards too.
    """
    if six_field and old_id:
        raise ValueError("the 6-field variant has no old ID")
    fields = [id12, name, dob, gender, address, issued]
    if not six_field:
        fields.insert(1, old_id)
    return "|".join(fields).encode("utf-8")


@dataclass(frozen=True)
class SamplePerson:
    """A fictional card holder."""

    id12: str
    old_id: str
    name: str
    dob: str
    gender: str
    address: str
    issued: str

    def payload(self, six_field: bool = False) -> bytes:
        return cccd_payload(
            self.id12,
            self.name,
            self.dob,
            self.gender,
            self.address,
            self.issued,
            old_id="" if six_field else self.old_id,
            six_field=six_field,
        )


def sample_people() -> list[bytes]:
    """The card QR payloads of eight fictional people (7-field; see `sample_cards`)."""
    return [card.payload() for card in sample_cards()]


def sample_cards() -> list[SamplePerson]:
    """Eight fictional people; IDs start with real province codes (001 Hà Nội, 079 TP.HCM...)."""
    return [
        SamplePerson(
            "001190012345",
            "013456789",
            "Nguyễn Thị Thu Uyên",
            "14021990",
            "Nữ",
            "Số 12 Ngõ 34 Phố Huế, Hai Bà Trưng, Hà Nội",
            "10052021",
        ),
        SamplePerson(
            "079085004321",
            "",
            "Trần Văn Đức",
            "03111985",
            "Nam",
            "45/7 Nguyễn Đình Chiểu, Phường Võ Thị Sáu, Quận 3, TP. Hồ Chí Minh",
            "22072021",
        ),
        SamplePerson(
            "048198007777",
            "201234567",
            "Lê Hoàng Phương Anh",
            "29061998",
            "Nữ",
            "Tổ 5, Phường Hòa Khánh Bắc, Quận Liên Chiểu, Đà Nẵng",
            "15032022",
        ),
        SamplePerson(
            "031200001122",
            "",
            "Phạm Quốc Bảo",
            "01012000",
            "Nam",
            "Số 8 Lạch Tray, Ngô Quyền, Hải Phòng",
            "05092021",
        ),
        SamplePerson(
            "092191005555", "", "Uyên", "17081991", "Nữ", "Ninh Kiều, Cần Thơ", "30062021"
        ),
        SamplePerson(
            "038067002468",
            "172345678",
            "Lý Ơn",
            "09121967",
            "Nam",
            "Thọ Xuân, Thanh Hóa",
            "12012022",
        ),
        SamplePerson(
            "046175009876",
            "191234567",
            "Hoàng Thị Ngọc Diệp",
            "25041975",
            "Nữ",
            "Kiệt 19 Lê Lợi, Phường Phú Hội, TP. Huế, Thừa Thiên Huế",
            "18082021",
        ),
        SamplePerson(
            "027092003141",
            "",
            "Đặng Minh Khôi",
            "31071992",
            "Nam",
            "Thôn Đông, Xã Phù Chẩn, TP. Từ Sơn, Bắc Ninh",
            "02112023",
        ),
    ]


def sample_event(**fields: Any) -> Event:
    """A valid CCCD event of the first sample card, seen now at gate-01; `fields` override.

    Each call gets a fresh event_id unless one is given. Values go through Event validation as
    JSON would (enum values may be given as their strings).
    """
    person = sample_cards()[0]
    card = person.payload()
    values: dict[str, Any] = {
        "event_id": new_event_id(),
        "device_id": "gate-01",
        "site_id": "hq",
        "seq": 1,
        "boot_id": "boot-1",
        "ts": datetime.now(UTC),
        "clock_synced": True,
        "direction": "in",
        "status": "recorded",
        "reason": "ok",
        "credential_type": "cccd",
        "subject_id": person.id12,
        "subject_name": person.name,
        "code_sha256": hashlib.sha256(card).hexdigest(),
        "code_length": len(card),
    }
    values.update(fields)
    return Event.model_validate(values)


def sample_draft(**fields: Any) -> EventDraft:
    """The draft of `sample_event(**fields)` (its seq dropped): the journal gives the seq."""
    return EventDraft.from_event(sample_event(**fields))


def write_replay_folder(
    folder: Path,
    payloads: Sequence[bytes | None],
    frame_size: FrameSize = (1280, 720),
    *,
    module_px: int = 6,
    noise: float = 0.0,
    seed: int = 0,
) -> list[Path]:
    """Write one PNG per payload (0001.png, 0002.png, ...; None = a frame with no code)."""
    cv2: Any = importlib.import_module("cv2")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, payload in enumerate(payloads, start=1):
        frame = (
            blank_frame(frame_size, noise=noise, seed=seed + index)
            if payload is None
            else render_code(
                payload, frame_size=frame_size, module_px=module_px, noise=noise, seed=seed + index
            )
        )
        ok, png = cv2.imencode(".png", frame)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode frame {index} as PNG")
        path = folder / f"{index:04d}.png"
        path.write_bytes(png.tobytes())
        paths.append(path)
    return paths
