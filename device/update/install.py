"""A verified payload made into a release folder (`install` in the signed manifest says how).

- `venv`: what provisioning does on first boot (docs/operations.md, "From a blank SD card"):
  `python3 -m venv --system-site-packages DIR`, then gatescan's wheel installed by its path
  under the bundle's constraints (`--find-links` the payload, so wheels it carries come first;
  the rest from the index under the same pins), then the import check that the pins left the
  camera's stack importable. gatescan itself is never looked up on an index.
- `tree`: the payload is the release folder, copied as it is (a prebuilt release; the tests'
  small releases).

The folder is made under a temporary name beside the releases; the caller renames it into place.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from protocol.release_bundle import Install, Manifest

SYSTEM_PYTHON = "/usr/bin/python3"
CONSTRAINTS_NAME = "constraints.txt"
EXTRAS = "device,fast"
IMPORT_CHECK = "import numpy, cv2, zxingcpp, pyzbar, device.app"
INSTALL_TIMEOUT_S = 1800.0


class InstallError(RuntimeError):
    """The release could not be installed; the message has the tool's last lines."""


def install(manifest: Manifest, payload: Path, target: Path, python: str = SYSTEM_PYTHON) -> None:
    if manifest.install is Install.TREE:
        shutil.copytree(payload, target, symlinks=False)
        return
    wheels = sorted(payload.glob(f"gatescan-{manifest.version}-*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"the payload holds {len(wheels)} gatescan-{manifest.version} wheels")
    _run([python, "-m", "venv", "--system-site-packages", str(target)], "making the virtualenv")
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    constraints = payload / CONSTRAINTS_NAME
    if constraints.is_file():
        pip += ["--constraint", str(constraints)]
    pip += ["--find-links", str(payload), f"{wheels[0]}[{EXTRAS}]"]
    _run(pip, "installing gatescan's wheel")
    _run([str(target / "bin" / "python"), "-c", IMPORT_CHECK], "the import check")


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{what}: {exc}") from None
    if done.returncode != 0:
        said = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise InstallError(f"{what} failed (exit {done.returncode}):\n{said}")
