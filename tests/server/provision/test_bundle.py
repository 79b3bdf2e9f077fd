"""The bundle: gatescan's wheel (sound: it installs offline into a fresh virtualenv and its
entry point runs) and the constraints (every requirement of `gatescan[device,fast]` pinned,
numpy to the target OS's own, each pin inside the range pyproject.toml allows).

Whether those pins resolve to wheels a Pi can install is asked of PyPI, in
test_pi_constraints.py (`make pi-constraints`, not the default suite: it needs the network)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

from server.provision.bundle import CONSTRAINTS, normalise, pinned, pip_download_args
from server.provision.target import TARGET, wheel_platforms

EXTRAS = ("device", "fast")


def requirements(wheel: Path) -> list[Requirement]:
    """What installing `gatescan[device,fast]` from this wheel asks for, markers evaluated for
    the target Python."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    wanted = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        environments = [
            {"extra": extra, "python_version": TARGET.python, "platform_machine": "aarch64"}
            for extra in ("", *EXTRAS)
        ]
        if requirement.marker is None or any(
            requirement.marker.evaluate(environment) for environment in environments
        ):
            wanted.append(requirement)
    return wanted


def test_the_wheel_holds_the_gate_and_the_enrolment_contract(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for module in ("device/app.py", "protocol/enrolment.py", "firmware_config/loader.py"):
        assert module in names, module
    assert not any("__pycache__" in name or name.startswith("tests/") for name in names)


def test_the_wheel_installs_offline_into_a_fresh_venv_and_its_command_runs(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # Nothing of this tree on the path (no PYTHONPATH), and no pip configuration: no index.
    clean = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull}
    install = subprocess.run(
        [
            *(str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps"),
            *("--disable-pip-version-check", "--find-links", str(wheel.parent), "gatescan"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    helped = subprocess.run(
        [str(venv / "bin" / "gatescan"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean,
    )
    assert helped.returncode == 0, helped.stderr
    assert "provision" in helped.stdout and "agent" in helped.stdout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import gatescan.cli as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr


def test_the_constraints_pin_every_requirement_of_the_gate(wheel: Path) -> None:
    pins = pinned(CONSTRAINTS.read_text(encoding="utf-8"))
    unpinned = [str(r) for r in requirements(wheel) if normalise(r.name) not in pins]
    assert unpinned == []
    outside = [
        f"{r.name}=={pins[normalise(r.name)]} is not in {r.specifier}"
        for r in requirements(wheel)
        if not r.specifier.contains(pins[normalise(r.name)], prereleases=True)
    ]
    assert outside == []


def test_numpy_is_pinned_to_the_target_oss_own(wheel: Path) -> None:
    assert pinned(CONSTRAINTS.read_text(encoding="utf-8"))["numpy"] == TARGET.numpy
    assert f"Python {TARGET.python}" in CONSTRAINTS.read_text(encoding="utf-8")


def test_pip_download_names_every_manylinux_the_pis_glibc_runs(wheel: Path) -> None:
    platforms = wheel_platforms()
    assert platforms[0] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in platforms  # numpy's and OpenCV's wheels
    assert "manylinux_2_28_aarch64" in platforms  # zxing-cpp's
    assert platforms[-1] == f"manylinux_2_{TARGET.glibc.split('.')[1]}_aarch64"
    args = pip_download_args(wheel, CONSTRAINTS, Path("dest"))
    assert args[args.index("--python-version") + 1] == TARGET.python
    assert args[-1].endswith(f"{wheel.name}[device,fast]")
