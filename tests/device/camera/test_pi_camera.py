"""The Pi camera when things go wrong: a loose cable, a stuck driver, an old or broken picamera2,
a lens held too close, a rate beyond the sensor. Against FakePicamera2, which blocks, queues and
refuses as picamera2 does (gatescan/testing/fake_picamera2.py)."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from device.app import open_source
from device.camera.pi_install import (
    NUMPY_HINT,
    UPGRADE_HINT,
    check_version,
    picamera2_version,
    version_numbers,
)
from device.camera.picamera2 import Picamera2Source
from device.camera.source import CameraError, CameraSetupError, Frame, ReopeningSource
from device.frames.capture import FrameCapture
from device.frames.handoff import LatestFrame
from device.system.health import Fault, Health
from firmware_config.errors import ConfigError
from firmware_config.loader import load_config
from firmware_config.schema import GateConfig, Picamera2Camera
from gatescan.testing.camera_modules import (
    CAMERA_MODULE_3,
    CAMERA_V2,
    FakeSensor,
    install_fake_picamera2,
)
from gatescan.testing.fake_buffers import FakeMappedArray
from gatescan.testing.fake_picamera2 import FakePicamera2
from tests.support.waiting import wait_until

BOUND = 10.0  # seconds: generous, for what must finish at once; only a hang reaches it


def pi_source(camera: FakePicamera2, **options: object) -> Picamera2Source:
    return Picamera2Source(
        width=320,
        height=240,
        camera_factory=lambda: camera,
        map_array=FakeMappedArray,
        **options,  # type: ignore[arg-type]
    )


def in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


# --- the fake blocks as picamera2 does ------------------------------------------------------


def started_unplugged(version: str | None = None) -> FakePicamera2:
    """A fake camera (of picamera2 `version`, else the fake's own) configured and started, then
    unplugged: no frame comes until replug()."""
    camera = FakePicamera2() if version is None else FakePicamera2(version=version)
    camera.configure(camera.create_video_configuration(lores={"size": (64, 48)}))
    camera.start()
    camera.unplug()
    return camera


def test_fake_keeps_a_timed_out_capture_queued_and_a_stop_waits_behind_it() -> None:
    camera = started_unplugged()
    with pytest.raises(TimeoutError):
        camera.capture_request(wait=0.05)
    assert camera.queued_jobs == ["capture_request"], "picamera2 keeps the timed-out job"
    stopping = in_thread(camera.stop)
    stopping.join(0.3)
    assert stopping.is_alive(), "stop() is queued behind the capture and waits for a frame"
    assert camera.queued_jobs == ["capture_request", "stop"]
    camera.replug()  # the next frame completes the capture, then the stop runs
    stopping.join(BOUND)
    assert not stopping.is_alive() and not camera.started


def test_fake_stops_at_once_after_cancel_all_and_flush_and_the_waiter_is_cancelled() -> None:
    camera = started_unplugged()
    outcome: list[BaseException] = []

    def capture() -> None:
        try:
            camera.capture_request(wait=True)
        except BaseException as exc:
            outcome.append(exc)

    capturing = in_thread(capture)
    # The capture's job queued first: a stop that came before it would leave nothing to cancel.
    wait_until(lambda: camera.queued_jobs, BOUND, "the capture's job queued")
    stopping = in_thread(lambda: (camera.cancel_all_and_flush(), camera.stop()))
    stopping.join(BOUND)
    capturing.join(BOUND)
    assert not stopping.is_alive() and not camera.started
    assert [type(exc) for exc in outcome] == [CancelledError]
    assert camera.queued_jobs == []


def test_fake_close_ends_the_event_loop_first_so_it_stops_without_waiting_for_the_queue() -> None:
    camera = started_unplugged()
    with pytest.raises(TimeoutError):
        camera.capture_request(wait=0.05)
    closing = in_thread(camera.close)
    closing.join(BOUND)
    assert not closing.is_alive() and camera.closed and not camera.started
    assert camera.queued_jobs == ["capture_request"], "left queued, never to complete"


def test_fake_before_0_3_20_takes_a_numeric_wait_as_wait_for_ever() -> None:
    camera = started_unplugged(version="0.3.19")
    capturing = in_thread(lambda: camera.capture_request(wait=0.05))
    capturing.join(0.3)
    assert capturing.is_alive(), "no TimeoutError: the 0.05 s were not honoured"
    camera.replug()
    capturing.join(BOUND)
    assert not capturing.is_alive()


def test_fake_refuses_a_control_the_camera_does_not_advertise() -> None:
    camera = FakePicamera2(sensor=CAMERA_V2)
    with pytest.raises(RuntimeError, match="Control AfMode is not advertised by libcamera"):
        camera.set_controls({"AfMode": 2})
    with pytest.raises(RuntimeError, match="Control LensPosition is not advertised"):
        camera.configure(camera.create_video_configuration(controls={"LensPosition": 5.0}))


# --- a loose cable: the close after a timed-out read, and the reopen -------------------------


def test_close_after_a_timed_out_read_returns_and_the_camera_reopens() -> None:
    """picamera2 issue #1065: before the fix this close waited for ever behind the timed-out
    capture, and the reopen never ran."""
    cameras: list[FakePicamera2] = []

    def open_camera() -> Picamera2Source:
        cameras.append(FakePicamera2())
        return pi_source(cameras[-1], read_timeout=0.05)

    source = ReopeningSource(open_camera)
    source.read()
    cameras[0].unplug()
    failures: list[BaseException] = []

    def read_after_the_cable_came_loose() -> None:
        try:
            source.read()  # times out, then drops (closes) the camera
        except CameraError as exc:
            failures.append(exc)

    reading = in_thread(read_after_the_cable_came_loose)
    try:
        reading.join(BOUND)
        assert not reading.is_alive(), "closing the camera hung behind the timed-out capture"
        assert len(failures) == 1 and "no frame from the Pi camera" in str(failures[0])
        assert cameras[0].closed and not cameras[0].started
        assert cameras[0].queued_jobs == [], "the timed-out capture was cancelled"
        frame: Frame = source.read()  # the camera is opened afresh
        assert len(cameras) == 2 and frame.shape == (240, 320)
    finally:
        cameras[0].replug()  # lets a stop that hung (the bug) finish
        source.close()


def test_a_close_stuck_in_the_driver_is_left_on_its_thread_with_an_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakePicamera2()
    source = pi_source(camera, close_timeout=0.2)
    stuck = camera.stick_driver()
    try:
        closing = in_thread(source.close)
        closing.join(BOUND)
        assert not closing.is_alive(), "close() returned: the gate goes on"
        assert source.abandoned_close is not None and source.abandoned_close.is_alive()
        assert "closing still blocks after 0.2 s" in caplog.text
        assert "systemd watchdog" in caplog.text
        with pytest.raises(CameraError, match="closed"):
            source.read()
    finally:
        stuck.set()
    assert source.abandoned_close is not None
    source.abandoned_close.join(BOUND)
    assert not source.abandoned_close.is_alive() and camera.closed


def test_a_healthy_close_leaves_nothing_behind() -> None:
    camera = FakePicamera2()
    source = pi_source(camera)
    source.close()
    assert source.abandoned_close is None and camera.closed


# --- picamera2 as installed: its version and its numpy --------------------------------------


@pytest.fixture
def site_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for a fake picamera2 distribution; its module is forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    yield tmp_path
    sys.modules.pop("picamera2", None)


def test_picamera2_older_than_0_3_20_is_refused_at_open_with_the_upgrade_hint(
    site_packages: Path,
) -> None:
    install_fake_picamera2(site_packages, "0.3.19")
    importlib.invalidate_caches()
    assert picamera2_version() == "0.3.19", "read from the installed distribution's metadata"
    with pytest.raises(CameraSetupError) as raised:
        Picamera2Source()
    assert str(raised.value) == UPGRADE_HINT.format(version="0.3.19")
    assert "sudo apt update && sudo apt full-upgrade" in str(raised.value)
    assert "python3-picamera2" in str(raised.value)


def test_picamera2_0_3_20_opens_from_its_installed_package(site_packages: Path) -> None:
    install_fake_picamera2(site_packages, "0.3.20")
    importlib.invalidate_caches()
    with Picamera2Source(width=320, height=240) as source:
        frame, release = source.read_lease()
        assert frame.shape == (240, 320)
        del frame
        assert release is not None
        release()


def test_a_numpy_that_picamera2_was_not_built_for_is_named_with_what_to_do(
    site_packages: Path,
) -> None:
    install_fake_picamera2(site_packages, "0.3.25", numpy_abi_mismatch=True)
    importlib.invalidate_caches()
    with pytest.raises(CameraSetupError) as raised:
        Picamera2Source()
    message = str(raised.value)
    assert message.startswith("picamera2 cannot be imported with this numpy (")
    assert "numpy.dtype size changed" in message
    assert "--system-site-packages" in message and "constraints" in message
    assert "python3-numpy" in message
    assert NUMPY_HINT.split("{")[0] in message


@pytest.mark.parametrize(
    ("version", "numbers"),
    [("0.3.19", (0, 3, 19)), ("0.3.20.post1", (0, 3, 20)), ("0.3.25+rpt1", (0, 3, 25))],
)
def test_versions_compare_by_their_numbers(version: str, numbers: tuple[int, ...]) -> None:
    assert version_numbers(version) == numbers


def test_a_picamera2_without_recorded_version_is_let_through() -> None:
    check_version(None)
    check_version("0.3.20")
    with pytest.raises(CameraSetupError):
        check_version("0.3.9")


def test_an_installation_error_is_reported_once_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health()
    reads: list[int] = []
    retried = threading.Event()

    class Broken:
        def read(self) -> Frame:
            reads.append(1)
            if len(reads) > 1:
                retried.set()
            raise CameraSetupError("picamera2 0.3.19 is too old")

        def close(self) -> None:
            pass

    stop = threading.Event()
    capture = FrameCapture(Broken(), LatestFrame(), health, first_backoff=0.001, max_backoff=0.001)
    running = in_thread(lambda: capture.run(stop))
    try:
        assert not retried.wait(0.5), "a CameraSetupError is not retried"
        assert health.faults == [Fault.CAMERA]
        assert caplog.text.count("not retried: fix the installation") == 1
    finally:
        stop.set()
    running.join(BOUND)
    assert not running.is_alive() and reads == [1]


# --- focus ------------------------------------------------------------------------------------


def test_camera_module_3_focuses_continuously_by_default() -> None:
    camera = FakePicamera2(sensor=CAMERA_MODULE_3)
    pi_source(camera)
    assert camera.controls_set["AfMode"] == 2 and "LensPosition" not in camera.controls_set


def test_a_fixed_focus_holds_the_lens_at_the_technicians_dioptres(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    camera = FakePicamera2(sensor=CAMERA_MODULE_3)
    pi_source(camera, focus=5.0)
    assert (camera.controls_set["AfMode"], camera.controls_set["LensPosition"]) == (0, 5.0)
    assert "lens held at 5.0 dioptres (sharpest at 20 cm)" in caplog.text


def test_a_focus_beyond_the_lens_is_set_to_its_nearest_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    short_lens = FakeSensor(
        "short",
        CAMERA_MODULE_3.modes,
        dict(CAMERA_MODULE_3.controls) | {"LensPosition": (0, 15.0, 1.0)},
    )
    camera = FakePicamera2(sensor=short_lens)
    pi_source(camera, focus=20.0)
    assert camera.controls_set["LensPosition"] == 15.0
    assert "beyond this lens (0 to 15.0): it is set to 15.0" in caplog.text


def test_a_camera_without_autofocus_ignores_focus_with_an_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    camera = FakePicamera2(sensor=CAMERA_V2)  # refuses AfMode, as libcamera does
    source = pi_source(camera, focus=5.0)
    assert "AfMode" not in camera.controls_set and source.width == 320
    assert "no autofocus on this camera" in caplog.text and "focus = 5.0 is not used" in caplog.text


# --- frame rate and buffers -------------------------------------------------------------------


def test_a_frame_rate_beyond_the_sensor_mode_is_reported_with_what_the_camera_will_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakePicamera2(sensor=CAMERA_MODULE_3)
    source = Picamera2Source(
        width=1920, height=1080, fps=60.0, camera_factory=lambda: camera, map_array=FakeMappedArray
    )
    assert source.frame_rate == pytest.approx(56.03, abs=0.01)
    assert "60 fps asked, but the sensor mode chosen for this frame size (2304x1296)" in caplog.text
    assert "the camera will deliver 56.0 fps" in caplog.text
    assert "Modes that reach 60 fps: 1536x864 (120 fps)" in caplog.text
    final = camera.camera_configuration()
    assert final["lores"]["size"] == (1920, 1080), "configured again with ours after the modes"
    assert camera.mode is not None and camera.mode.size == (2304, 1296)
    assert source.read().shape == (1080, 1920)


def test_a_frame_rate_within_the_sensor_mode_reads_no_sensor_modes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakePicamera2(sensor=CAMERA_V2)
    source = pi_source(camera)
    assert source.frame_rate == 30.0
    assert "sensor_modes" not in camera.call_names() and "fps asked" not in caplog.text


def test_buffer_memory_is_logged_and_a_size_beyond_a_small_pi_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    pi_source(FakePicamera2())
    assert "5 buffers of main 320x240 + lores 320x240 + raw 1536x864" in caplog.text
    caplog.clear()
    Picamera2Source(
        width=4608, height=2592, fps=10, camera_factory=FakePicamera2, map_array=FakeMappedArray
    )
    assert "more than a Pi with 512 MB may have (64 MiB)" in caplog.text


# --- the config reaches the camera ------------------------------------------------------------


def test_the_configs_focus_reaches_the_camera(site_packages: Path) -> None:
    install_fake_picamera2(site_packages, "0.3.25")
    importlib.invalidate_caches()
    source = open_source(GateConfig(camera=Picamera2Camera(width=320, height=240, focus=4)))
    assert isinstance(source, Picamera2Source)
    camera = source._camera
    assert isinstance(camera, FakePicamera2)
    assert (camera.controls_set["AfMode"], camera.controls_set["LensPosition"]) == (0, 4.0)
    source.close()


def write_camera(tmp_path: Path, lines: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(f'[camera]\ntype = "picamera2"\n{lines}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "focus"), [("", "auto"), ('focus = "auto"', "auto"), ("focus = 5", 5.0)]
)
def test_the_focus_setting_is_auto_or_dioptres(
    tmp_path: Path, lines: str, focus: str | float
) -> None:
    camera = load_config(write_camera(tmp_path, lines), env={}).camera
    assert isinstance(camera, Picamera2Camera) and camera.focus == focus


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            '"near"',
            "camera.focus: give 'auto' (continuous autofocus) or the lens position in dioptres, "
            "1 / distance in metres (5 for 20 cm), not 'near'",
        ),
        (
            "40",
            "camera.focus: the lens position is 0 (infinity) to 32 dioptres "
            "(1 / distance in metres: 5 for 20 cm), not 40",
        ),
        ("-1.5", "camera.focus: the lens position is 0 (infinity) to 32 dioptres"),
        ("true", "camera.focus: give 'auto' (continuous autofocus)"),
    ],
)
def test_a_bad_focus_setting_says_what_to_write(tmp_path: Path, value: str, problem: str) -> None:
    path = write_camera(tmp_path, f"focus = {value}")
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    [found] = [str(p).removeprefix(f"{path}: ") for p in raised.value.problems]
    assert found.startswith(problem)
