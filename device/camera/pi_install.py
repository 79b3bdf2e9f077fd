"""What the Pi camera needs installed: picamera2 0.3.20 or later, importable with this numpy.

picamera2 comes from Raspberry Pi OS (apt: python3-picamera2), not PyPI. Two ways it goes wrong
that retrying the camera never fixes, so both are a `CameraSetupError` (reported once, not retried
with backoff):

- Too old. Before 0.3.20 picamera2 took a numeric `wait` (our read timeout) as a plain "wait":
  `dispatch_functions` tested `if wait:` and waited without a limit, so a camera that stops
  delivering frames hung the read for ever instead of failing in 2 s (picamera2's CHANGELOG,
  0.3.20: "improved handling of timeouts when cameras stop responding"; `cancel_all_and_flush`,
  which closing needs, came with it). The version is the installed distribution's
  (`importlib.metadata`): the apt package installs picamera2's metadata into dist-packages
  (`pip freeze` in a --system-site-packages venv lists it, e.g. picamera2==0.3.19 for
  python3-picamera2 0.3.19-1, picamera2 issue #1088); picamera2 itself has no `__version__`.
- A foreign numpy. picamera2 imports its JPEG encoder, hence simplejpeg, compiled against the
  system's numpy (python3-numpy). A venv that pip-installed another numpy (numpy 2.x pulled in by
  an unpinned opencv-python-headless) makes that import fail with ValueError "numpy.dtype size
  changed, may indicate binary incompatibility" (issues #1088, #1211), not ImportError; the other
  way round it is an ImportError naming numpy.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from device.camera.source import CameraSetupError

MIN_VERSION = (0, 3, 20)
INSTALL_HINT = (
    "picamera2 comes from Raspberry Pi OS: sudo apt install python3-picamera2 "
    "(and create the venv with --system-site-packages)"
)
UPGRADE_HINT = (
    "picamera2 {version} is too old: before 0.3.20 a read of a camera that stops sending frames "
    "waits for ever instead of timing out. Upgrade Raspberry Pi OS's python3-picamera2 to 0.3.20 "
    "or later: sudo apt update && sudo apt full-upgrade (check with: apt policy python3-picamera2)"
)
NUMPY_HINT = (
    "picamera2 cannot be imported with this numpy ({numpy} at {numpy_file}): {error}. picamera2 "
    "and its simplejpeg come from apt, built for the system's numpy (python3-numpy); a numpy "
    "installed in the venv by pip (often numpy 2.x pulled in by opencv-python-headless) shadows "
    "it. Keep the venv made with --system-site-packages and pin pip to the system's numpy: put "
    "numpy==<the version of: dpkg -s python3-numpy> in a constraints file and reinstall with "
    "pip install -c constraints.txt --force-reinstall 'gatescan[device]' (pip then picks an "
    "opencv-python-headless that accepts that numpy), or pip uninstall numpy in the venv"
)
NUMPY_ABI_WORDS = ("size changed", "binary incompatibility", "numpy")


def picamera2_version(
    version_of: Callable[[str], str] = importlib.metadata.version,
) -> str | None:
    """The installed picamera2's version, or None when no distribution metadata names one."""
    try:
        return version_of("picamera2")
    except importlib.metadata.PackageNotFoundError:
        return None


def version_numbers(version: str) -> tuple[int, ...]:
    """'0.3.19' -> (0, 3, 19); '0.3.20.post1' or '0.3.20+rpt1' -> (0, 3, 20)."""
    numbers = []
    for part in version.split(".")[:3]:
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def check_version(version: str | None) -> None:
    """Refuse a picamera2 older than MIN_VERSION; a version nobody recorded is let through
    (there is nothing to compare), and the read timeout is then picamera2's to keep."""
    if version is not None and version_numbers(version) < MIN_VERSION:
        raise CameraSetupError(UPGRADE_HINT.format(version=version))


def import_picamera2(
    version_of: Callable[[str], str] = importlib.metadata.version,
) -> Callable[[], Any]:
    """picamera2.Picamera2, once the installed picamera2 is known to be usable."""
    check_version(picamera2_version(version_of))
    return import_name("Picamera2")


def import_mapped_array() -> Any:
    return import_name("MappedArray")


def import_name(name: str) -> Any:
    try:
        module = importlib.import_module("picamera2")
    except ValueError as exc:
        if not any(word in str(exc) for word in NUMPY_ABI_WORDS):
            raise CameraSetupError(f"picamera2 cannot be imported: {exc!r}") from exc
        raise CameraSetupError(numpy_hint(exc)) from exc
    except ImportError as exc:
        if "numpy" in str(exc):
            raise CameraSetupError(numpy_hint(exc)) from exc
        raise CameraSetupError(INSTALL_HINT) from exc
    return getattr(module, name)


def numpy_hint(error: Exception) -> str:
    return NUMPY_HINT.format(numpy=np.__version__, numpy_file=np.__file__, error=error)
