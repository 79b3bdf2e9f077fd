"""Frame sources: replay folders and video files are real files; picamera2 is the fake beside us."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno

from device.camera.memory import MemorySource
from device.camera.opencv import OpenCVSource
from device.camera.pi_install import INSTALL_HINT
from device.camera.picamera2 import BUFFER_COUNT, READ_TIMEOUT, Picamera2Source
from device.camera.replay import EMPTY_GREY, ReplaySource
from device.camera.source import CameraError, Frame, FramePacer, ReopeningSource, read_leased
from gatescan.testing.fake_buffers import FakeMappedArray, luma
from gatescan.testing.fake_picamera2 import FakePicamera2


class FakeClock:
    """A clock that moves only when slept on (or told to), recording every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def write_grey(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> None:
    width, height = size
    assert cv2.imwrite(str(path), np.full((height, width), value, dtype=np.uint8))


def levels(frames: list[Frame]) -> list[int]:
    """Each frame's mean grey level, rounded: which image a frame came from."""
    return [round(float(frame.mean())) for frame in frames]


def qr_picture(text: str, module_px: int = 6) -> Frame:
    """A black-on-white QR code of `text` with its quiet zone."""
    dark = np.array(segno.make(text, error="m", micro=False).matrix, dtype=np.uint8)
    dark = np.pad(dark, 4)
    picture = np.where(dark == 1, 0, 255).astype(np.uint8)
    return np.kron(picture, np.ones((module_px, module_px), dtype=np.uint8))


# --- ReplaySource -------------------------------------------------------------------------


def test_replay_shows_images_in_name_order_each_for_hold_times_fps_frames(tmp_path: Path) -> None:
    write_grey(tmp_path / "b.bmp", 20)
    write_grey(tmp_path / "a.png", 10)
    write_grey(tmp_path / "c.webp", 30)
    (tmp_path / "notes.txt").write_text("not an image")
    source = ReplaySource(tmp_path, fps=10, hold=0.3, pace=False)
    assert [path.name for path in source.paths] == ["a.png", "b.bmp", "c.webp"]
    assert levels([source.read() for _ in range(9)]) == [10] * 3 + [20] * 3 + [30] * 3


def test_replay_turns_colour_images_into_2d_grey_uint8_frames(tmp_path: Path) -> None:
    colour = np.zeros((30, 40, 3), dtype=np.uint8)
    colour[:, :, 2] = 255  # pure red in OpenCV's BGR
    assert cv2.imwrite(str(tmp_path / "red.png"), colour)
    frame = ReplaySource(tmp_path, pace=False).read()
    assert frame.shape == (30, 40) and frame.dtype == np.uint8
    assert levels([frame]) == [76]  # ITU-R 601 luma of pure red


def test_replay_shows_empty_grey_frames_of_the_last_size_after_the_end(tmp_path: Path) -> None:
    write_grey(tmp_path / "1.png", 10, size=(40, 30))
    write_grey(tmp_path / "2.png", 20, size=(64, 48))
    source = ReplaySource(tmp_path, fps=10, hold=0.2, pace=False)
    frames = [source.read() for _ in range(3)]
    assert not source.exhausted
    frames.append(source.read())
    assert source.exhausted, "the last frame of the last image has been shown"
    after = [source.read() for _ in range(5)]
    assert levels(frames) == [10, 10, 20, 20]
    assert all(frame.shape == (48, 64) and (frame == EMPTY_GREY).all() for frame in after)


def test_replay_with_loop_starts_again_at_the_first_image(tmp_path: Path) -> None:
    write_grey(tmp_path / "1.png", 10)
    write_grey(tmp_path / "2.png", 20)
    source = ReplaySource(tmp_path, fps=10, hold=0.1, loop=True, pace=False)
    assert levels([source.read() for _ in range(5)]) == [10, 20, 10, 20, 10]
    assert source.exhausted


def test_replay_paces_frames_at_fps_without_bursting_after_a_slow_consumer(
    tmp_path: Path,
) -> None:
    write_grey(tmp_path / "1.png", 10)
    clock = FakeClock()
    source = ReplaySource(tmp_path, fps=10, hold=10, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        source.read()
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])  # the first frame is due at once
    clock.now += 0.03  # the consumer decodes for 30 ms
    source.read()
    assert clock.sleeps[-1] == pytest.approx(0.07)
    clock.now += 0.5  # the consumer stalls for five frames
    sleeps_before = len(clock.sleeps)
    source.read()
    source.read()
    assert len(clock.sleeps) == sleeps_before + 1, "no sleep right after the stall"
    assert clock.sleeps[-1] == pytest.approx(0.1), "then the schedule restarts at fps"


def test_replay_without_pacing_never_sleeps(tmp_path: Path) -> None:
    write_grey(tmp_path / "1.png", 10)
    clock = FakeClock()
    source = ReplaySource(tmp_path, fps=10, hold=1, pace=False, clock=clock, sleep=clock.sleep)
    for _ in range(25):
        source.read()
    assert clock.sleeps == []


def test_replay_skips_an_undecodable_file_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_grey(tmp_path / "1.png", 10)
    (tmp_path / "2.png").write_bytes(b"\x89PNG but truncated")
    write_grey(tmp_path / "3.png", 30)
    source = ReplaySource(tmp_path, fps=10, hold=0.1, pace=False)
    with caplog.at_level(logging.WARNING, logger="device.camera.replay"):
        assert levels([source.read(), source.read()]) == [10, 30]
    assert "2.png" in caplog.text


def test_replay_reads_each_image_only_when_it_comes_up(tmp_path: Path) -> None:
    write_grey(tmp_path / "1.png", 10)
    write_grey(tmp_path / "2.png", 20)
    source = ReplaySource(tmp_path, fps=10, hold=0.1, pace=False)
    assert levels([source.read()]) == [10]
    write_grey(tmp_path / "2.png", 99)  # replaced before its turn: the new one must be shown
    assert levels([source.read()]) == [99]


@pytest.mark.parametrize("make_folder", ["missing", "empty", "no_images"])
def test_replay_of_a_folder_without_images_raises_camera_error(
    tmp_path: Path, make_folder: str
) -> None:
    folder = tmp_path / "lane"
    if make_folder != "missing":
        folder.mkdir()
    if make_folder == "no_images":
        (folder / "readme.txt").write_text("nothing to see")
    with pytest.raises(CameraError, match="lane"):
        ReplaySource(folder)


def test_replay_of_only_unreadable_images_raises_camera_error_on_every_read(
    tmp_path: Path,
) -> None:
    (tmp_path / "1.jpg").write_bytes(b"not a jpeg")
    source = ReplaySource(tmp_path, loop=True, pace=False)
    for _ in range(2):
        with pytest.raises(CameraError, match="no readable image"):
            source.read()


def test_replay_read_after_close_raises_camera_error(tmp_path: Path) -> None:
    write_grey(tmp_path / "1.png", 10)
    with ReplaySource(tmp_path, pace=False) as source:
        source.read()
    with pytest.raises(CameraError, match="closed"):
        source.read()


def test_pacer_rejects_a_frame_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="fps must be positive"):
        FramePacer(0)


# --- OpenCVSource ---------------------------------------------------------------------------


def write_video(path: Path, frames: list[Frame], fps: float = 15.0) -> None:
    height, width = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


@pytest.fixture
def qr_video(tmp_path: Path) -> tuple[Path, list[Frame]]:
    """Three 320x240 frames: a QR code moving right on a grey background."""
    code = qr_picture("GATE-07|entry")
    frames = []
    for shift in (0, 20, 40):
        frame = np.full((240, 320), 160, dtype=np.uint8)
        frame[40 : 40 + code.shape[0], 60 + shift : 60 + shift + code.shape[1]] = code
        frames.append(frame)
    path = tmp_path / "lane.avi"
    write_video(path, frames)
    return path, frames


def test_opencv_reads_a_video_file_as_grey_frames_with_a_decodable_qr_code(
    qr_video: tuple[Path, list[Frame]],
) -> None:
    path, written = qr_video
    with OpenCVSource(str(path), pace=False) as source:
        frames = [source.read() for _ in written]
    for frame, original in zip(frames, written, strict=True):
        assert frame.shape == (240, 320) and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - original).mean() < 3, "MJPG is lossy, but only a bit"
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(frame)
        assert text == "GATE-07|entry"


def test_opencv_read_past_the_end_of_a_video_raises_then_reopens_it(
    qr_video: tuple[Path, list[Frame]],
) -> None:
    path, written = qr_video
    source = OpenCVSource(str(path), pace=False)
    for _ in written:
        source.read()
    with pytest.raises(CameraError, match="no frame"):
        source.read()
    again = source.read()  # the scanner retries: the capture is opened afresh
    assert np.abs(again.astype(int) - written[0]).mean() < 3
    source.close()


def test_opencv_paces_a_video_file_to_its_frame_rate(qr_video: tuple[Path, list[Frame]]) -> None:
    path, written = qr_video
    clock = FakeClock()
    with OpenCVSource(str(path), clock=clock, sleep=clock.sleep) as source:
        for _ in written:
            source.read()
    assert clock.sleeps == pytest.approx([1 / 15, 1 / 15])


@pytest.mark.parametrize("target", ["/dev/video-that-does-not-exist", "97", "missing.avi"])
def test_opencv_raises_camera_error_for_a_device_that_does_not_exist(
    tmp_path: Path, target: str
) -> None:
    if target.endswith(".avi"):
        target = str(tmp_path / target)
    with pytest.raises(CameraError, match="cannot open camera"):
        OpenCVSource(target)


# --- Picamera2Source (FakePicamera2 mirrors the picamera2 calls) ----------------------------


def open_fake(
    width: int = 1000, height: int = 600, fps: float = 25.0, read_timeout: float = READ_TIMEOUT
) -> tuple[Picamera2Source, FakePicamera2]:
    camera = FakePicamera2()
    source = Picamera2Source(
        width=width,
        height=height,
        fps=fps,
        camera_factory=lambda: camera,
        map_array=FakeMappedArray,
        read_timeout=read_timeout,
    )
    return source, camera


def test_picamera2_returns_the_y_plane_as_a_view_of_the_captured_buffer() -> None:
    source, camera = open_fake(width=1000, height=600)
    first, second = source.read(), source.read()
    assert camera.captured[0].shape == (900, 1024), "YUV420 rows, padded stride"
    assert first.shape == (600, 1000) and first.dtype == np.uint8
    assert np.shares_memory(first, camera.captured[0]), "no copy"
    assert np.array_equal(first, luma(1000, 600, 0)), "no padding, no chroma"
    assert np.array_equal(second, luma(1000, 600, 1))


def test_picamera2_asks_for_a_lores_yuv420_stream_of_the_size_and_frame_rate() -> None:
    _, camera = open_fake(width=1000, height=600, fps=25.0)
    assert camera.call_names() == [
        "create_video_configuration",
        "configure",
        "camera_configuration",
        "start",
    ]
    config = camera.calls[1][1]
    assert config["lores"]["size"] == (1000, 600) and config["lores"]["format"] == "YUV420"
    main_w, main_h = config["main"]["size"]
    assert main_w >= 1000 and main_h >= 600, "main must be at least as large as lores"
    assert config["controls"]["FrameRate"] == 25.0
    assert config["controls"]["AfMode"] == 2, "Camera Module 3: continuous autofocus"
    assert config["queue"] is False, "never hand back a frame queued before the read"


def test_picamera2_reads_wait_at_most_the_read_timeout() -> None:
    source, camera = open_fake()
    source.read()
    assert camera.calls[-1] == ("capture_array", {"name": "lores", "wait": READ_TIMEOUT})


def test_picamera2_frames_have_the_size_the_camera_settled_on() -> None:
    class RoundingCamera(FakePicamera2):
        def configure(self, camera_config: dict[str, object]) -> None:
            super().configure(camera_config)
            assert self.camera_config is not None
            self.camera_config["lores"]["size"] = (992, 600)  # libcamera adjusted the width

    camera = RoundingCamera()
    source = Picamera2Source(width=1000, height=600, camera_factory=lambda: camera)
    assert (source.width, source.height) == (992, 600)
    assert source.read().shape == (600, 992)


def test_picamera2_unplugged_camera_read_raises_camera_error() -> None:
    source, camera = open_fake(read_timeout=0.05)
    source.read()
    camera.unplug()
    with pytest.raises(CameraError, match="no frame from the Pi camera"):
        source.read()


def test_picamera2_that_cannot_open_raises_camera_error() -> None:
    def no_camera() -> FakePicamera2:
        raise RuntimeError("Camera __init__ sequence did not complete.")

    with pytest.raises(CameraError, match="cannot open the Pi camera"):
        Picamera2Source(camera_factory=no_camera)


def test_picamera2_rejected_configuration_raises_camera_error_and_closes_the_camera() -> None:
    class RejectingCamera(FakePicamera2):
        def configure(self, camera_config: dict[str, object]) -> None:
            raise RuntimeError("Configuration failed")

    camera = RejectingCamera()
    with pytest.raises(CameraError, match="cannot start the Pi camera at 1280x720"):
        Picamera2Source(camera_factory=lambda: camera)
    assert camera.closed


def test_picamera2_close_cancels_queued_captures_then_stops_and_closes_the_camera_once() -> None:
    source, camera = open_fake()
    started = len(camera.calls)
    source.close()
    source.close()
    assert camera.call_names()[started : started + 3] == ["cancel_all_and_flush", "stop", "close"]
    assert camera.call_names().count("close") == 1 and camera.closed
    with pytest.raises(CameraError, match="closed"):
        source.read()


def test_picamera2_missing_module_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on a PC: the import fails
    with pytest.raises(CameraError) as raised:
        Picamera2Source()
    assert str(raised.value) == INSTALL_HINT
    assert "sudo apt install python3-picamera2" in INSTALL_HINT
    assert "--system-site-packages" in INSTALL_HINT


def test_picamera2_source_works_as_a_context_manager() -> None:
    camera = FakePicamera2()
    with Picamera2Source(width=640, height=480, camera_factory=lambda: camera) as source:
        assert source.read().shape == (480, 640)
    assert camera.closed and not camera.started


def test_picamera2_lease_is_the_y_plane_in_the_cameras_own_buffer_without_a_copy() -> None:
    source, camera = open_fake(width=1000, height=600)
    frame, release = source.read_lease()
    [mapping] = camera.mappings
    assert mapping.array is not None and mapping.array.shape == (900, 1024)
    assert np.shares_memory(frame, mapping.array), "a view of the mapped DMA buffer: no copy"
    assert frame.shape == (600, 1000)
    assert np.array_equal(frame, luma(1000, 600, 0)), "no padding, no chroma"
    assert camera.call_names()[-1] == "capture_request"
    assert camera.calls[-1] == ("capture_request", {"wait": READ_TIMEOUT})
    assert len(camera.held) == 1, "the request is held while the frame is in use"
    del frame  # the holder's duty: no view may outlive the release
    assert release is not None
    release()
    release()  # a second call does nothing (picamera2 would raise on a negative ref count)
    assert camera.held == [] and camera.unmap_failures == 0
    assert len(camera.free_buffers) == BUFFER_COUNT


def test_picamera2_released_buffers_are_refilled_with_later_frames() -> None:
    source, camera = open_fake(width=64, height=48)
    numbers = []
    for _ in range(BUFFER_COUNT * 2):
        frame, release = source.read_lease()
        numbers.append(next(n for n in range(20) if np.array_equal(frame, luma(64, 48, n))))
        del frame
        assert release is not None
        release()
    assert numbers == list(range(BUFFER_COUNT * 2))
    assert camera.most_held == 1 and camera.unmap_failures == 0


def test_picamera2_lease_of_an_unplugged_camera_raises_camera_error() -> None:
    source, camera = open_fake(read_timeout=0.05)
    camera.unplug()
    with pytest.raises(CameraError, match="no frame from the Pi camera"):
        source.read_lease()


def test_picamera2_decode_scale_asks_the_isp_for_a_smaller_lores_stream() -> None:
    camera = FakePicamera2()
    source = Picamera2Source(
        width=1280,
        height=720,
        lores_size=(640, 360),
        camera_factory=lambda: camera,
        map_array=FakeMappedArray,
    )
    config = camera.calls[1][1]
    assert config["main"]["size"] == (1280, 720) and config["lores"]["size"] == (640, 360)
    assert source.read().shape == (360, 640)


def test_picamera2_lores_larger_than_the_frame_is_refused() -> None:
    camera = FakePicamera2()
    with pytest.raises(CameraError, match="larger than the frame size"):
        Picamera2Source(
            width=640, height=480, lores_size=(1280, 720), camera_factory=lambda: camera
        )
    assert camera.closed


def test_reopening_source_passes_the_cameras_leases_through() -> None:
    camera = FakePicamera2()

    def open_camera() -> Picamera2Source:
        return Picamera2Source(
            width=64, height=48, camera_factory=lambda: camera, map_array=FakeMappedArray
        )

    source = ReopeningSource(open_camera)
    frame, release = read_leased(source)
    assert release is not None, "the Pi camera's buffer is lent, not copied"
    assert np.shares_memory(frame, camera.mappings[-1].array)
    del frame
    release()
    assert camera.held == []
    source.close()


def test_a_source_without_leases_reads_frames_with_nothing_to_give_back() -> None:
    frames = [np.full((4, 4), value, np.uint8) for value in (1, 2)]
    source = MemorySource(frames, pace=False, loop=False)
    assert read_leased(source).release is None
    assert levels([read_leased(source).frame, source.read()]) == [2, 2], "then the last for ever"


def test_memory_source_paces_frames_and_loops() -> None:
    clock = FakeClock()
    frames = [np.full((4, 4), value, np.uint8) for value in (1, 2, 3)]
    source = MemorySource(frames, fps=20.0, clock=clock, sleep=clock.sleep)
    assert levels([source.read() for _ in range(5)]) == [1, 2, 3, 1, 2]
    assert clock.sleeps == pytest.approx([0.05] * 4)
    source.close()
    with pytest.raises(CameraError, match="closed"):
        source.read()
