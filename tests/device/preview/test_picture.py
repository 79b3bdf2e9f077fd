"""The preview's picture: downscaled, the region of interest drawn where it is, the codes read
outlined (and nothing drawn for a frame without one), a JPEG within its byte budget, its quality
stepped down (and then its size) until it fits."""

from __future__ import annotations

import cv2
import numpy as np

from device.preview.picture import (
    CODE_COLOUR,
    JPEG_BUDGET,
    QUALITIES,
    ROI_COLOUR,
    make_picture,
)
from gatescan.testing.samples import write_replay_folder


def qr_frame(tmp_path, size=(1280, 720)) -> np.ndarray:  # type: ignore[no-untyped-def]
    write_replay_folder(tmp_path, [b"GATESCAN-PREVIEW-TEST-0001"], frame_size=size)
    [path] = sorted(tmp_path.glob("*.png"))
    return np.asarray(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), np.uint8)


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image)


def near(pixel: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) < 60))


def test_a_frame_is_downscaled_framed_and_its_code_outlined(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame = qr_frame(tmp_path)
    picture = make_picture(frame, (0.25, 0.1, 0.5, 0.8), codes=1)
    assert picture.jpeg.startswith(b"\xff\xd8") and len(picture.jpeg) <= JPEG_BUDGET
    assert (picture.width, picture.height) == (640, 360)
    assert picture.roi == (160, 36, 320, 288)
    assert picture.boxes == 1
    image = decoded(picture.jpeg)
    x, y, w, h = picture.roi
    assert near(image[y + h // 2, x], ROI_COLOUR)  # the region's left edge
    assert near(image[y, x + w // 2], ROI_COLOUR)  # its top edge
    greenish = np.all(np.abs(image.astype(int) - np.array(CODE_COLOUR)) < 60, axis=2)
    assert greenish.sum() > 200  # the code's outline


def test_nothing_is_outlined_when_no_code_was_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    picture = make_picture(qr_frame(tmp_path), None, codes=0)
    assert picture.boxes == 0
    image = decoded(picture.jpeg)
    greenish = np.all(np.abs(image.astype(int) - np.array(CODE_COLOUR)) < 60, axis=2)
    assert greenish.sum() < 20


def test_a_busy_frame_is_stepped_down_until_it_fits_its_budget() -> None:
    noise = np.random.default_rng(7).integers(0, 256, (720, 1280), dtype=np.uint8)
    roomy = make_picture(noise, None, codes=0, budget=400_000)
    assert roomy.quality == QUALITIES[0]
    tight = make_picture(noise, None, codes=0, budget=48 * 1024)
    assert len(tight.jpeg) <= 48 * 1024
    assert tight.quality < QUALITIES[0]
    tiny = make_picture(noise, None, codes=0, budget=8 * 1024)  # even quality 20 is too much
    assert len(tiny.jpeg) <= 8 * 1024 and tiny.width < 640
