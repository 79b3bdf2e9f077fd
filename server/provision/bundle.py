"""The bundle a card carries to the gate: gatescan's own wheel, built from this source tree, and
the constraints that pin every dependency to what the Pi's OS can run (deploy/pi/constraints.txt).

The gate installs the wheel by its file path, so the name `gatescan` is never looked up on a
package index (where it is not ours to trust). The dependencies come from PyPI under the
constraints, or, with `pip_download` having put them in the bundle, from the bundle alone.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from server.provision.target import (
    CONSTRAINTS_NAME,
    EXTRAS,
    TARGET,
    UPDATER_UNITS,
    OsRelease,
    wheel_platforms,
)

SOURCE_TREE = Path(__file__).resolve().parents[2]
CONSTRAINTS = SOURCE_TREE / "deploy" / "pi" / CONSTRAINTS_NAME
AGENT_UNIT = SOURCE_TREE / "deploy" / "systemd" / "gatescan-agent.service"
UPDATER_UNIT_FILES = tuple(SOURCE_TREE / "deploy" / "systemd" / name for name in UPDATER_UNITS)
# setuptools that reads pyproject.toml's `license = "..."` (PEP 639); an older one in this
# environment means building in pip's isolated environment instead (which fetches setuptools).
_SETUPTOOLS_FOR_BUILD = 77
# pyproject.toml's [tool.setuptools.packages.find] include, as folders.
PACKAGES = ("gatescan", "device", "server", "firmware_config", "protocol")


class BundleError(RuntimeError):
    """The bundle could not be made; the message says why (pip's last lines included)."""


def source_tree_files() -> list[Path]:
    """What provisioning reads from the source tree; missing ones mean this is not a clone."""
    return [SOURCE_TREE / "pyproject.toml", CONSTRAINTS, AGENT_UNIT, *UPDATER_UNIT_FILES]


def check_source_tree() -> None:
    missing = [str(path) for path in source_tree_files() if not path.is_file()]
    if missing:
        raise BundleError(
            "gatescan provision runs from a clone of gatescan's repository (it builds the"
            f" wheel and reads deploy/); missing here: {', '.join(missing)}"
        )


def _pip(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _fail(what: str, done: subprocess.CompletedProcess[str]) -> BundleError:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    said = "\n".join([line for line in lines if not line.startswith("WARNING:")][-15:])
    return BundleError(f"{what} failed (exit {done.returncode}):\n{said}")


def _can_build_here() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return major >= _SETUPTOOLS_FOR_BUILD


def build_wheel(dest: Path, source: Path = SOURCE_TREE) -> Path:
    """gatescan's wheel, built from `source` into `dest` (`pip wheel --no-deps`), from a copy of
    what goes into it: setuptools would otherwise build in the tree and reuse its build/ folder,
    where a module deleted from the source lives on."""
    dest.mkdir(parents=True, exist_ok=True)
    isolation = ["--no-build-isolation"] if _can_build_here() else []
    with tempfile.TemporaryDirectory(prefix="gatescan-wheel-") as folder:
        copy = Path(folder) / "src"
        _copy_sources(source, copy)
        built = Path(folder) / "wheel"
        done = _pip(["wheel", "--no-deps", *isolation, "-q", "-w", str(built), str(copy)], 600)
        if done.returncode != 0:
            raise _fail("building gatescan's wheel", done)
        (wheel,) = built.glob("gatescan-*.whl")
        (dest / wheel.name).unlink(missing_ok=True)
        return Path(shutil.move(wheel, dest / wheel.name))


def _copy_sources(source: Path, copy: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source / name, copy / name)
    for license_file in source.glob("LICEN[CS]E*"):
        shutil.copy2(license_file, copy / license_file.name)
    for package in PACKAGES:
        shutil.copytree(source / package, copy / package, ignore=skip)


def add_wheel(wheel: Path, bundle: Path) -> Path:
    """A wheel built elsewhere (--wheel), copied into the bundle."""
    if not (wheel.is_file() and wheel.name.startswith("gatescan-") and wheel.suffix == ".whl"):
        raise BundleError(f"--wheel {wheel}: not a gatescan wheel file (gatescan-*.whl)")
    bundle.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(wheel, bundle / wheel.name))


def add_constraints(bundle: Path, constraints: Path = CONSTRAINTS) -> Path:
    bundle.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(constraints, bundle / CONSTRAINTS_NAME))


def wheel_version(wheel: Path) -> str:
    """'gatescan-0.1.0-py3-none-any.whl' -> '0.1.0'."""
    return wheel.name.split("-")[1]


def pip_download_args(
    wheel: Path, constraints: Path, dest: Path, release: OsRelease = TARGET
) -> list[str]:
    """`pip download` of everything `gatescan[device,fast]` needs, as wheels for a 64-bit Pi on
    `release` (no sdist: nothing is compiled on the gate), under the constraints."""
    platforms = [arg for tag in wheel_platforms(release) for arg in ("--platform", tag)]
    abi = f"cp{release.python.replace('.', '')}"
    return [
        "download",
        "--only-binary=:all:",
        *platforms,
        "--python-version",
        release.python,
        "--implementation",
        "cp",
        *("--abi", abi, "--abi", "abi3", "--abi", "none"),
        "--constraint",
        str(constraints),
        "--dest",
        str(dest),
        f"{wheel.resolve()}[{EXTRAS}]",
    ]


def pip_download(wheel: Path, constraints: Path, dest: Path, release: OsRelease = TARGET) -> None:
    """The Pi's dependency wheels into `dest` (needs PyPI); BundleError when they do not
    resolve for the Pi."""
    done = _pip(pip_download_args(wheel, constraints, dest, release), 1200)
    if done.returncode != 0:
        raise _fail("downloading the Pi's wheels", done)


def pinned(constraints_text: str) -> dict[str, str]:
    """{normalised name: version} of the `name==version` lines of a constraints file."""
    pins = {}
    for line in constraints_text.splitlines():
        spec = line.split("#", 1)[0].strip()
        if "==" in spec:
            name, version = spec.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares them (and wheel file names spell them)."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


def wheels_in(folder: Path) -> dict[str, str]:
    """{normalised name: version} of the wheels in a folder."""
    found = {}
    for wheel in folder.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        found[normalise(name)] = version
    return found
