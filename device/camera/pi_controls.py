"""The Pi camera's settings a gate makes or checks: focus, the frame rate's limit, buffer memory.

Read against picamera2's source (picamera2.py, controls.py) and libcamera's control list, and
tested against gatescan/testing/fake_picamera2.py; not yet run on a camera.

- Focus. Camera Module 3 (imx708) has a motorised lens and advertises `AfMode` (and
  `LensPosition`, in dioptres: 1 / distance in metres, 0 = infinity). libcamera starts it in
  manual mode at its default lens position (1.0: focused at 1 m), so a code held at 20 cm is a
  blur. focus = "auto" runs continuous autofocus; a number holds the lens at that position (the
  technician's setting for a fixed reading distance). Cameras without `AfMode` (Camera v2,
  imx219, focused from about 1 m; the HQ camera's manual lens) ignore the setting, said once.
- Frame rate. Each sensor mode has a shortest frame duration; the IPA clamps the asked duration
  to it, so an fps beyond the mode's limit is silently lower. After `configure`,
  `camera_controls["FrameDurationLimits"]` holds the chosen mode's limits: a rate beyond them is
  logged with the rate the camera will actually run at, and the sensor modes that would reach it.
- Buffer memory. Frame buffers come from the contiguous memory pool (CMA) on a Pi 4 and older;
  the size of one set of buffers times the count is logged, with a warning past BUFFER_BUDGET.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, Protocol, TypeAlias

log = logging.getLogger(__name__)

Focus: TypeAlias = Literal["auto"] | float
""""auto": continuous autofocus where the camera has it; a number: the lens position in dioptres."""

# libcamera's AfModeEnum (control_ids_core.yaml): AfModeManual 0, AfModeAuto 1 (one scan when
# triggered), AfModeContinuous 2. Plain ints: libcamera's Python binding takes an int for an enum
# control, and importing libcamera's enum here would import libcamera on a PC.
AF_MODE_MANUAL = 0
AF_MODE_CONTINUOUS = 2

MIB = 1024 * 1024
# A Pi 4 under Raspberry Pi OS reserves a CMA pool of 508 MiB (the vc4-kms-v3d-pi4 overlay's
# (512 - 4) MiB); a 512 MB board (Pi Zero 2 W, Pi 3) gets a smaller one, and the kernel's own
# default is 64 MiB: above this the buffers may not fit beside the display's. A Pi 5 maps camera
# buffers through its IOMMU and needs no contiguous pool for them.
BUFFER_BUDGET = 64 * MIB

ControlRanges = Mapping[str, tuple[Any, Any, Any]]
"""picamera2's camera_controls: each control's (min, max, default)."""


class ConfiguredCamera(Protocol):
    """The part of picamera2.Picamera2 read here, once it is configured."""

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]: ...

    @property
    def sensor_modes(self) -> list[dict[str, Any]]: ...

    def camera_configuration(self) -> dict[str, Any]: ...


def focus_controls(focus: Focus, controls: ControlRanges) -> dict[str, Any]:
    """The controls that give `focus` on a camera with these `controls` ({} without AfMode)."""
    if "AfMode" not in controls:
        log.info(
            "camera: no autofocus on this camera (it offers no AfMode control); its lens is "
            "fixed, so camera.focus = %r is not used",
            focus,
        )
        return {}
    if focus == "auto":
        log.info("camera: continuous autofocus")
        return {"AfMode": AF_MODE_CONTINUOUS}
    lowest, highest, _ = controls.get("LensPosition", (0.0, float("inf"), None))
    position = min(max(float(focus), float(lowest)), float(highest))
    if position != focus:
        log.warning(
            "camera: camera.focus = %s dioptres is beyond this lens (%s to %s): it is set to %s",
            focus,
            lowest,
            highest,
            position,
        )
    log.info("camera: lens held at %s dioptres (sharpest at %s)", position, distance(position))
    return {"AfMode": AF_MODE_MANUAL, "LensPosition": position}


def distance(dioptres: float) -> str:
    return "infinity" if dioptres <= 0 else f"{100 / dioptres:.0f} cm"


def fastest_rate(camera: ConfiguredCamera) -> float | None:
    """The configured sensor mode's highest frame rate (None: the camera names no limit)."""
    limits = camera.camera_controls.get("FrameDurationLimits")
    if limits is None or not limits[0]:
        return None
    return 1e6 / float(limits[0])


def check_frame_rate(camera: ConfiguredCamera, fps: float) -> float:
    """The rate the configured camera will run at: `fps`, or its sensor mode's limit when `fps`
    is beyond it (logged as a warning with the modes that would reach `fps`).

    Reading `sensor_modes` reconfigures the camera once per mode (picamera2 does so to learn
    each mode's limit): the caller configures it again afterwards."""
    fastest = fastest_rate(camera)
    if fastest is None or fps <= fastest * 1.001:  # durations are whole microseconds
        return fps
    sensor = camera.camera_configuration().get("sensor") or {}
    mode = "x".join(str(n) for n in sensor.get("output_size", ())) or "?"
    faster = [
        f"{'x'.join(str(n) for n in m['size'])} ({m['fps']:.0f} fps)"
        for m in camera.sensor_modes
        if "size" in m and m.get("fps", 0) >= fps
    ]
    log.warning(
        "camera: %.0f fps asked, but the sensor mode chosen for this frame size (%s) runs at "
        "most %.1f fps: the camera will deliver %.1f fps. %s",
        fps,
        mode,
        fastest,
        fastest,
        f"Modes that reach {fps:.0f} fps: {', '.join(faster)}; a camera width and height at "
        "most that size let the camera choose one."
        if faster
        else f"No mode of this camera reaches {fps:.0f} fps; lower camera.fps.",
    )
    return fastest


def buffer_bytes(config: Mapping[str, Any]) -> int:
    """The memory the configured streams' buffers take: every stream has buffer_count."""
    streams = (config.get(name) for name in ("main", "lores", "raw"))
    one_set = sum(int(stream.get("framesize") or 0) for stream in streams if stream)
    return int(config.get("buffer_count", 1)) * one_set


def report_buffers(config: Mapping[str, Any]) -> int:
    total = buffer_bytes(config)
    sizes = " + ".join(
        f"{name} {'x'.join(str(n) for n in stream['size'])}"
        for name in ("main", "lores", "raw")
        if (stream := config.get(name))
    )
    count = config.get("buffer_count")
    if total > BUFFER_BUDGET:
        log.warning(
            "camera: %s buffers of %s take %.0f MiB of camera memory, more than a Pi with 512 MB "
            "may have (%.0f MiB): if the camera fails to start, lower camera.width and height",
            count,
            sizes,
            total / MIB,
            BUFFER_BUDGET / MIB,
        )
    else:
        log.info("camera: %s buffers of %s: %.1f MiB of camera memory", count, sizes, total / MIB)
    return total
