"""The camera modules the fake picamera2 plays, and a picamera2 installed into a folder.

`CAMERA_MODULE_3` (imx708, autofocus) and `CAMERA_V2` (imx219, fixed focus) hold the sensor modes
and controls those sensors report through picamera2's `sensor_modes` and `camera_controls` (from
public reports, not a camera here). `install_fake_picamera2` writes a `picamera2` package and its
version's distribution metadata into a folder, as apt's python3-picamera2 puts them into
dist-packages, so that the adapter's import checks (device/camera/pi_install.py) meet what they
meet on a Pi: a version in the metadata, and an import that may fail under a foreign numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SensorMode:
    size: tuple[int, int]
    fps: float  # the mode's fastest rate: 1e6 / its minimum frame duration in microseconds
    bit_depth: int = 10


@dataclass(frozen=True)
class FakeSensor:
    """What a camera module reports: its model, sensor modes and the controls it advertises."""

    model: str
    modes: tuple[SensorMode, ...]
    controls: Mapping[str, tuple[Any, Any, Any]] = field(default_factory=dict)


COMMON_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "ExposureTime": (1, 66666, 20000),
    "AnalogueGain": (1.0, 16.0, 1.0),
    "NoiseReductionMode": (0, 4, 0),
    "FrameDurationLimits": (8000, 120000, 33333),  # replaced by the mode's after configure
}
CAMERA_MODULE_3 = FakeSensor(
    "imx708",
    (
        SensorMode((1536, 864), 120.13),
        SensorMode((2304, 1296), 56.03),
        SensorMode((4608, 2592), 14.35),
    ),
    COMMON_CONTROLS
    | {
        "AfMode": (0, 2, 0),  # libcamera: 0 manual, 1 auto (one scan), 2 continuous
        "AfRange": (0, 2, 0),
        "AfTrigger": (0, 1, 0),
        "LensPosition": (0.0, 32.0, 1.0),  # dioptres; manual mode starts at 1.0 (1 m)
    },
)
CAMERA_V2 = FakeSensor(
    "imx219",
    (
        SensorMode((640, 480), 206.65),
        SensorMode((1640, 1232), 41.85),
        SensorMode((1920, 1080), 47.57),
        SensorMode((3280, 2464), 21.19),
    ),
    COMMON_CONTROLS,
)


# simplejpeg's message when it was built against another numpy than the one imported (picamera2
# issues #1088, #1211): picamera2 imports its JPEG encoder, hence simplejpeg, when it is imported.
NUMPY_ABI_MESSAGE = (
    "numpy.dtype size changed, may indicate binary incompatibility. "
    "Expected 96 from C header, got 88 from PyObject"
)


def install_fake_picamera2(folder: Path, version: str, *, numpy_abi_mismatch: bool = False) -> None:
    """Write an importable `picamera2` package into `folder` with its distribution metadata
    (an .egg-info, as a Debian python3-* package installs it), whose Picamera2 is this fake at
    `version`; with `numpy_abi_mismatch` its import fails as picamera2's does under a foreign
    numpy. Put `folder` on sys.path to use it."""
    package = folder / "picamera2"
    package.mkdir(parents=True, exist_ok=True)
    if numpy_abi_mismatch:
        body = f"raise ValueError({NUMPY_ABI_MESSAGE!r})\n"
    else:
        body = (
            "from gatescan.testing.fake_buffers import FakeMappedArray as MappedArray\n"
            "from gatescan.testing.fake_picamera2 import FakePicamera2\n\n\n"
            "class Picamera2(FakePicamera2):\n"
            "    def __init__(self, camera_num=0):\n"
            f"        super().__init__(version={version!r})\n\n\n"
            '__all__ = ["MappedArray", "Picamera2"]\n'
        )
    (package / "__init__.py").write_text(body, encoding="utf-8")
    info = folder / f"picamera2-{version}.egg-info"
    info.mkdir(exist_ok=True)
    (info / "PKG-INFO").write_text(
        f"Metadata-Version: 2.1\nName: picamera2\nVersion: {version}\n", encoding="utf-8"
    )
