"""A stand-in for picamera2.Picamera2 that mirrors the calls our adapter makes, and only those.

It was written against picamera2's own source (0.3.20 to 0.3.25: picamera2.py, job.py,
controls.py), not against a camera: where picamera2 blocks, this blocks; where it raises, this
raises the same kind of error.

Shapes: create_video_configuration returns a dict with the same keys and stream defaults (a raw
stream at the main size, as picamera2 adds for a Raspberry Pi camera); configure checks the lores
stream as picamera2 does, picks a sensor mode, fills in each stream's stride and framesize and the
"sensor" entry; capture_array("lores") returns a fresh (height * 3 / 2, stride) YUV420 array whose
rows are padded past the image width, as on a Pi 4 (picamera2 copies the buffer out there). Every
call is recorded in `calls`.

The job queue (picamera2.py: dispatch_functions, process_requests; job.py): every capture is a
job appended to one list, and jobs run strictly in order, each when a frame completes. A
`capture_request(wait=2.0)` that times out raises TimeoutError, but its job stays at the head of
the list; `stop()` is a job too (the camera's event loop runs on a thread of its own once
started), queued behind it, and waits for it without a time limit: with no frame coming (a loose
cable) stop never returns, which is picamera2 issue #1065. `cancel_all_and_flush()` cancels
every queued job (its waiter gets CancelledError) and empties the list, after which stop runs at
once. `close()` first ends that event loop (picamera2's stop_preview), so its own stop runs
directly and does not wait behind the jobs, which it leaves queued, never to complete. Before
picamera2 0.3.20 (`version`) a numeric `wait` was taken as "wait": such a capture blocks until a
frame comes. A driver stuck in the kernel (`stick_driver`) blocks any stop, queued or direct.

Buffers: `buffer_count` per stream, each a memory file descriptor (as a DMA buffer is a dmabuf
fd), filled by the "ISP" only while free. A request holds its buffers until `release()`, which
hands them back to be filled again (so a frame used after its release shows a later frame's
pixels); with none free no frame completes and a capture waits, as on a camera with no buffer to
fill (the buffers, requests and mappings: fake_buffers.py). `FakeMappedArray` stands in for
picamera2.MappedArray: it mmaps the buffer's fd on enter and
closes the mapping on exit, which fails (BufferError, counted in `unmap_failures`) while a view of
it lives. That is stricter than picamera2 0.3.20 and later, whose allocator keeps its mappings and
whose exit only ends the buffer's DMA sync (older picamera2 closed the mmap there): here a view
that outlives its release is caught even when nothing reads it.

Controls (controls.py): `camera_controls` is {name: (min, max, default)} for the controls the
camera advertises; a control it does not advertise, in a configuration's "controls" or in
`set_controls`, raises RuntimeError("Control X is not advertised by libcamera"). After configure,
FrameDurationLimits' minimum is the chosen sensor mode's; `sensor_modes` configures the camera
once per mode to read each one's fastest rate, as picamera2 does, and leaves it configured so.

The camera modules it plays (their sensor modes and controls), and a picamera2 installed into a
folder for the adapter's import checks: camera_modules.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future
from types import MappingProxyType
from typing import Any

import numpy as np

from gatescan.testing.camera_modules import CAMERA_MODULE_3, FakeSensor, SensorMode
from gatescan.testing.fake_buffers import (
    CHROMA_BYTE,
    PADDING_BYTE,
    FakeCompletedRequest,
    FakeDmaBuffer,
    FakeMappedArray,
    luma,
    padded_stride,
    yuv420_shape,
)

NUMERIC_WAIT_SINCE = (0, 3, 20)  # picamera2's CHANGELOG: 0.3.20, timeouts when cameras stop
DEFAULT_RAW: Mapping[str, Any] = MappingProxyType({})  # picamera2's default: a raw stream


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


class FakeJob:
    """picamera2's Job: a step tried on each frame until done, and a Future for its waiter."""

    def __init__(self, step: Callable[[], tuple[bool, Any]], name: str) -> None:
        self.step = step
        self.name = name
        self.future: Future[Any] = Future()
        self.future.set_running_or_notify_cancel()

    def cancel(self) -> None:
        self.future.set_exception(CancelledError())


class FakePicamera2:
    def __init__(
        self,
        *,
        sensor: FakeSensor = CAMERA_MODULE_3,
        version: str = "0.3.25",
    ) -> None:
        self.sensor = sensor
        self.version = version
        self.sensor_resolution = max(
            (mode.size for mode in sensor.modes), key=lambda s: s[0] * s[1]
        )
        self.calls: list[tuple[str, Any]] = []
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.captured: list[np.ndarray] = []
        self.fail_with: BaseException | None = None
        """Raised at once by every later capture (a camera that errors rather than stalls)."""
        self.delivering = True
        """False while no frame completes: a loose cable (`unplug`, `replug`)."""
        self.driver_stuck: threading.Event | None = None
        """While set up, stopping blocks inside the "kernel" until it is set (`stick_driver`)."""
        self.frame_number = 0
        self.free_buffers: list[dict[str, FakeDmaBuffer]] = []
        self.held: list[FakeCompletedRequest] = []
        self.most_held = 0
        self.mappings: list[FakeMappedArray] = []
        self.unmap_failures = 0
        self.controls_set: dict[str, Any] = {}
        self.mode: SensorMode | None = None
        self._sensor_modes: list[dict[str, Any]] | None = None
        self._jobs: list[FakeJob] = []
        self._lock = threading.RLock()  # picamera2's self.lock: the job list and the buffers

    # --- what a test does to the camera ------------------------------------------------------

    def unplug(self) -> None:
        """Frames stop: captures wait (and time out), and so does a stop queued behind them."""
        with self._lock:
            self.delivering = False

    def replug(self) -> None:
        """Frames come again: queued jobs run in order, as when the next request completes."""
        with self._lock:
            self.delivering = True
        self._run_jobs()

    def stick_driver(self) -> threading.Event:
        """From now on the camera's stop blocks in the driver until the returned event is set:
        a hang no cancel can undo (picamera2 issue #1275: a task in D state in streamoff)."""
        self.driver_stuck = threading.Event()
        return self.driver_stuck

    @property
    def queued_jobs(self) -> list[str]:
        with self._lock:
            return [job.name for job in self._jobs]

    # --- configuration -----------------------------------------------------------------------

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        controls = dict(self.sensor.controls)
        if self.mode is not None:
            _, highest, default = controls["FrameDurationLimits"]
            controls["FrameDurationLimits"] = (round(1e6 / self.mode.fps), highest, default)
        return controls

    @property
    def sensor_modes(self) -> list[dict[str, Any]]:
        """picamera2 configures the camera in each raw mode to read its limits, once."""
        if self._sensor_modes is None:
            self.calls.append(("sensor_modes", None))
            modes = []
            for mode in self.sensor.modes:
                self.configure(self.create_video_configuration(raw={"size": mode.size}))
                fastest = round(1e6 / self.camera_controls["FrameDurationLimits"][0], 2)
                modes.append(
                    {
                        "format": f"SRGGB{mode.bit_depth}_CSI2P",
                        "bit_depth": mode.bit_depth,
                        "size": mode.size,
                        "fps": fastest,
                    }
                )
            self._sensor_modes = modes
        return self._sensor_modes

    def create_video_configuration(
        self,
        main: Mapping[str, Any] | None = None,
        lores: Mapping[str, Any] | None = None,
        raw: Mapping[str, Any] | None = DEFAULT_RAW,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: Mapping[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: Mapping[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        self.calls.append(
            ("create_video_configuration", {"main": main, "lores": lores, "controls": controls})
        )
        if self.closed:
            raise RuntimeError("Camera not opened")
        main_stream = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}
        main_stream |= dict(main or {})
        lores_stream = None
        if lores is not None:
            lores_stream = {"format": "YUV420", "size": main_stream["size"], "preserve_ar": False}
            lores_stream |= dict(lores)
        raw_stream = None  # raw=None: no raw stream
        if raw is not None:
            raw_stream = {"format": "SRGGB10_CSI2P", "size": main_stream["size"]} | dict(raw)
        defaults = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_stream,
            "lores": lores_stream,
            "raw": raw_stream,
            "controls": defaults | dict(controls or {}),
            "sensor": dict(sensor or {}),
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any]) -> None:
        self.calls.append(("configure", camera_config))
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config)  # picamera2 copies the top level, updates the streams
        lores = config["lores"]
        if lores is not None:
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            (main_w, main_h), (lores_w, lores_h) = config["main"]["size"], lores["size"]
            if lores_w > main_w or lores_h > main_h:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        self._check_controls(config["controls"])
        raw = config["raw"]
        self.mode = self._pick_mode(raw["size"] if raw is not None else config["main"]["size"])
        if raw is not None:  # the raw stream is the sensor mode's packed pixels
            raw["size"] = self.mode.size
            raw["stride"] = padded_stride(self.mode.size[0] * self.mode.bit_depth // 8)
            raw["framesize"] = raw["stride"] * self.mode.size[1]
        config["sensor"] = {"bit_depth": self.mode.bit_depth, "output_size": self.mode.size}
        for name in ("main", "lores"):
            stream = config[name]
            if stream is not None:
                width, height = stream["size"]
                stream["stride"] = padded_stride(width)
                stream["framesize"] = stream["stride"] * height * 3 // 2
        self.controls_set = dict(config["controls"])
        self.camera_config = config

    def _pick_mode(self, size: tuple[int, int]) -> SensorMode:
        """The smallest mode that covers `size` (what libcamera's scoring picks for the sizes
        a gate asks for), else the largest."""
        covering = [m for m in self.sensor.modes if m.size[0] >= size[0] and m.size[1] >= size[1]]
        if covering:
            return min(covering, key=lambda m: m.size[0] * m.size[1])
        return max(self.sensor.modes, key=lambda m: m.size[0] * m.size[1])

    def _check_controls(self, controls: Mapping[str, Any]) -> None:
        for name in controls:
            real = "FrameDurationLimits" if name == "FrameRate" else name  # a virtual control
            if real not in self.sensor.controls:
                raise RuntimeError(f"Control {real} is not advertised by libcamera")

    def set_controls(self, controls: Mapping[str, Any]) -> None:
        self.calls.append(("set_controls", dict(controls)))
        self._check_controls(controls)
        self.controls_set |= dict(controls)

    def camera_configuration(self) -> dict[str, Any]:
        self.calls.append(("camera_configuration", None))
        assert self.camera_config is not None, "configure first"
        return self.camera_config

    def start(self) -> None:
        self.calls.append(("start", None))
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        streams = {
            name: stream["framesize"]
            for name in ("main", "lores")
            if (stream := self.camera_config[name]) is not None
        }
        with self._lock:
            self.free_buffers = [
                {name: FakeDmaBuffer(size) for name, size in streams.items()}
                for _ in range(self.camera_config["buffer_count"])
            ]
            self.started = True

    # --- the job queue -----------------------------------------------------------------------

    def _dispatch(self, job: FakeJob, wait: bool | float | None) -> Any:
        """picamera2's dispatch_functions: queue the job, wait for it (a number: that long)."""
        if wait is None:
            wait = True
        if isinstance(wait, bool):
            timeout = None
        elif version_tuple(self.version) < NUMERIC_WAIT_SINCE:
            timeout = None  # taken as a plain "wait": no time limit
        else:
            timeout = float(wait)
        with self._lock:
            self._jobs.append(job)
        self._run_jobs()
        if wait is False:
            return job
        return job.future.result(timeout=timeout)  # TimeoutError: the job stays queued

    def _run_jobs(self) -> None:
        """What the event loop does when a request completes: run jobs in order while each
        finishes; the first that cannot (no frame yet) holds every job behind it."""
        while True:
            with self._lock:
                if not self._jobs:
                    return
                job = self._jobs[0]
                try:
                    done, result = job.step()
                except Exception as exc:
                    self._jobs.pop(0)
                    job.future.set_exception(exc)
                    continue
                if not done:
                    return
                self._jobs.pop(0)
            job.future.set_result(result)

    def cancel_all_and_flush(self) -> None:
        self.calls.append(("cancel_all_and_flush", None))
        with self._lock:
            for job in self._jobs:
                job.cancel()
            self._jobs = []

    def _next_frame(self) -> dict[str, FakeDmaBuffer] | None:
        """The buffers of a frame that just completed, if one can (under the lock)."""
        if not (self.started and self.delivering and self.free_buffers):
            return None
        assert self.camera_config is not None
        buffers = self.free_buffers.pop(0)
        for name, buffer in buffers.items():
            stream = self.camera_config[name]
            self._expose(stream, buffer.isp_view.reshape(yuv420_shape(stream)))
        self.frame_number += 1
        return buffers

    def _failing(self) -> None:
        # A camera not started raises nothing in picamera2: the capture waits for a frame.
        if self.fail_with is not None:
            raise self.fail_with

    def capture_array(
        self,
        name: str = "main",
        wait: bool | float | None = None,
        signal_function: Callable[[Any], None] | None = None,
    ) -> np.ndarray:
        self.calls.append(("capture_array", {"name": name, "wait": wait}))
        self._failing()

        def step() -> tuple[bool, Any]:
            buffers = self._next_frame()
            if buffers is None:
                return False, None
            assert self.camera_config is not None
            stream = self.camera_config[name]
            array = buffers[name].isp_view.reshape(yuv420_shape(stream)).copy()  # make_array
            self.free_buffers.append(buffers)
            self.captured.append(array)
            return True, array

        result: np.ndarray = self._dispatch(FakeJob(step, "capture_array"), wait)
        return result

    def capture_request(
        self,
        wait: bool | float | None = None,
        signal_function: Callable[[Any], None] | None = None,
        flush: bool | int | None = None,
    ) -> FakeCompletedRequest:
        self.calls.append(("capture_request", {"wait": wait}))
        self._failing()

        def step() -> tuple[bool, Any]:
            buffers = self._next_frame()
            if buffers is None:
                return False, None
            assert self.camera_config is not None
            request = FakeCompletedRequest(self, buffers, dict(self.camera_config))
            self.held.append(request)
            self.most_held = max(self.most_held, len(self.held))
            return True, request

        result: FakeCompletedRequest = self._dispatch(FakeJob(step, "capture_request"), wait)
        return result

    def _expose(self, stream: Mapping[str, Any], array: np.ndarray) -> None:
        """Write the next frame into a YUV420 array: luma, padding right of it, neutral chroma."""
        (width, height) = stream["size"]
        array[:, :] = CHROMA_BYTE
        array[:height, :] = PADDING_BYTE
        array[:height, :width] = luma(width, height, self.frame_number)

    def give_back(self, request: FakeCompletedRequest) -> None:
        with self._lock:
            self.held.remove(request)
            self.free_buffers.append(request.buffers)
        self._run_jobs()  # a free buffer lets the next frame complete

    # --- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """With its event loop on a thread of its own (as after start()), picamera2 queues the
        stop as a job and waits for it with no time limit."""
        self.calls.append(("stop", None))
        if not self.started:
            return

        self._dispatch(FakeJob(lambda: (True, None), "stop"), True)
        self._stop_streaming()

    def _stop_streaming(self) -> None:
        """libcamera's stop, down to the driver's streamoff."""
        stuck = self.driver_stuck
        if stuck is not None:
            stuck.wait()  # streamoff stuck in the kernel: nothing in Python interrupts it
        self.started = False

    def close(self) -> None:
        """picamera2 ends its event loop first (stop_preview), then stops directly: this stop
        is no job and waits for none; queued jobs are left, never to complete."""
        self.calls.append(("close", None))
        if self.closed:
            return
        if self.started:
            self._stop_streaming()
        self.closed = True

    def call_names(self) -> list[str]:
        return [name for name, _ in self.calls]
