"""Region of interest and decode scale: the camera config that sets them, and the frames decoded.

Real config files, real zbar on generated frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.app import framing_for, lores_size
from device.decode.zbar import PyzbarDecoder
from device.frames.framing import Framing
from firmware_config.errors import ConfigError
from firmware_config.loader import load_config
from firmware_config.schema import OpenCVCamera, Picamera2Camera, ReplayCamera
from gatescan.testing.samples import blank_frame, render_code

CODE = b"GATE-PASS-000123"


def load_camera(tmp_path: Path, lines: str) -> object:
    path = tmp_path / "gate.toml"
    path.write_text(f'[camera]\ntype = "picamera2"\n{lines}\n', encoding="utf-8")
    return load_config(path, env={}).camera


def problems(tmp_path: Path, lines: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_camera(tmp_path, lines)
    path = tmp_path / "gate.toml"
    return [str(problem).removeprefix(f"{path}: ") for problem in raised.value.problems]


# --- the config -----------------------------------------------------------------------------------


def test_roi_and_decode_scale_default_to_the_whole_frame_at_full_size() -> None:
    for camera in (Picamera2Camera(), OpenCVCamera(target="0"), ReplayCamera(folder=Path("f"))):
        assert (camera.roi, camera.decode_scale) == (None, 1.0)
        assert framing_for(camera) == Framing()


def test_roi_and_decode_scale_load_from_the_camera_section(tmp_path: Path) -> None:
    camera = load_camera(tmp_path, "roi = [0.25, 0.1, 0.5, 0.8]\ndecode_scale = 0.5")
    assert camera == Picamera2Camera(roi=[0.25, 0.1, 0.5, 0.8], decode_scale=0.5)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ("roi = [0.1, 0.2]", "camera.roi: give 4 numbers [x, y, width, height], not 2"),
        (
            "roi = [0, 0, 640, 480]",
            "camera.roi: the numbers are fractions of the frame from 0 to 1, not pixels: "
            "got [0.0, 0.0, 640.0, 480.0]",
        ),
        (
            "roi = [0.5, 0.5, 0.6, 0.2]",
            "camera.roi: x + width and y + height must be at most 1 (the frame): "
            "got [0.5, 0.5, 0.6, 0.2]",
        ),
        (
            "roi = [0.1, 0.2, 0, 0.3]",
            "camera.roi: width and height must be more than 0: got [0.1, 0.2, 0.0, 0.3]",
        ),
        ('roi = ["left", 0, 1, 1]', "camera.roi[0]: expected a number, got 'left'"),
        ("decode_scale = 0.1", "camera.decode_scale: must be at least 0.2, got 0.1"),
        ("decode_scale = 2", "camera.decode_scale: must be at most 1, got 2"),
        ("roi_ = [0, 0, 1, 1]", "camera.roi_: unknown key; did you mean 'roi'?"),
    ],
)
def test_a_bad_roi_or_decode_scale_is_refused_with_the_key_and_the_fix(
    tmp_path: Path, lines: str, problem: str
) -> None:
    assert problems(tmp_path, lines) == [problem]


def test_a_roi_reaching_the_frames_edge_is_inside_it(tmp_path: Path) -> None:
    camera = load_camera(tmp_path, "roi = [0.1, 0.3, 0.9, 0.7]")  # 0.1 + 0.9 may sum past 1.0
    assert camera == Picamera2Camera(roi=[0.1, 0.3, 0.9, 0.7])


def test_the_pi_camera_scales_in_its_isp_other_cameras_in_the_decode_thread() -> None:
    pi = Picamera2Camera(width=1280, height=720, roi=[0, 0, 0.5, 1], decode_scale=0.5)
    usb = OpenCVCamera(target="0", roi=[0, 0, 0.5, 1], decode_scale=0.5)
    assert lores_size(pi) == (640, 360)
    assert framing_for(pi) == Framing(region=(0, 0, 0.5, 1), scale=1.0)
    assert framing_for(usb) == Framing(region=(0, 0, 0.5, 1), scale=0.5)
    assert lores_size(Picamera2Camera(width=1000, height=562, decode_scale=0.33)) == (330, 184)


# --- the frames decoded ---------------------------------------------------------------------------


def test_the_region_is_a_view_of_the_frame_not_a_copy() -> None:
    frame = blank_frame((1280, 720))
    cut = Framing(region=(0.25, 0.5, 0.5, 0.5)).apply(frame)
    assert cut.shape == (360, 640)
    assert np.shares_memory(cut, frame)
    assert cut.__array_interface__["data"][0] == frame[360:, 320:].__array_interface__["data"][0]


def test_the_whole_frame_is_handed_through_untouched() -> None:
    frame = blank_frame((64, 48))
    assert Framing().apply(frame) is frame


def test_the_decode_scale_shrinks_the_region() -> None:
    frame = blank_frame((1280, 720))
    assert Framing(scale=0.5).apply(frame).shape == (360, 640)
    assert Framing(region=(0, 0, 0.5, 1), scale=0.5).apply(frame).shape == (360, 320)


def test_impossible_framings_are_refused() -> None:
    with pytest.raises(ValueError, match="decode scale"):
        Framing(scale=0)
    with pytest.raises(ValueError, match="not inside the frame"):
        Framing(region=(0.5, 0, 0.6, 1))


def test_only_codes_inside_the_region_are_read() -> None:
    frame = render_code(CODE, frame_size=(1280, 720), center=(960, 360))  # right half
    decoder = PyzbarDecoder()
    assert [code.data for code in decoder.decode(Framing().apply(frame))] == [CODE]
    assert decoder.decode(Framing(region=(0, 0, 0.5, 1)).apply(frame)) == []
    right = Framing(region=(0.5, 0, 0.5, 1)).apply(frame)
    assert [code.data for code in decoder.decode(right)] == [CODE]


def test_a_code_of_six_pixel_modules_is_read_at_half_scale() -> None:
    frame = render_code(CODE, frame_size=(1280, 720), module_px=6, noise=4.0)
    scaled = Framing(scale=0.5).apply(frame)
    assert [code.data for code in PyzbarDecoder().decode(scaled)] == [CODE]
