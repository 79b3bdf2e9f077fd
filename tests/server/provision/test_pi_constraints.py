"""Do the constraints resolve for a Pi, without a Pi? `pip download` of `gatescan[device,fast]`
from the wheel, as binary wheels for 64-bit Raspberry Pi OS Trixie (aarch64, CPython 3.13, its
glibc's manylinux tags), under deploy/pi/constraints.txt.

It asks PyPI, so it is marked slow and left out of the default suite and CI (a registry's bad
minute must not fail a change that did not touch this): `make pi-constraints` runs it, and
docs/operations.md ("The constraints") keeps its latest result."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.provision.bundle import (
    CONSTRAINTS,
    BundleError,
    normalise,
    pinned,
    pip_download,
    wheels_in,
)

pytestmark = pytest.mark.slow


def test_the_constraints_resolve_to_wheels_for_a_64_bit_pi_on_trixie(
    wheel: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "wheels"
    pip_download(wheel, CONSTRAINTS, dest)
    found = wheels_in(dest)
    pins = pinned(CONSTRAINTS.read_text(encoding="utf-8"))
    del found[normalise("gatescan")]
    # Everything pip chose is pinned, at its pin; no pin is left unused.
    assert found == pins
    compiled = [path.name for path in dest.glob("*.whl") if not path.name.endswith("-any.whl")]
    assert compiled and all("aarch64" in name for name in compiled), compiled
    print("\n".join(sorted(path.name for path in dest.glob("*.whl"))))


def test_the_check_fails_on_pins_a_pi_on_trixie_cannot_install(wheel: Path, tmp_path: Path) -> None:
    """The check can fail: Bookworm's numpy (1.24) under this OpenCV (which asks numpy>=2)
    and Trixie's Python 3.13 (for which numpy 1.24 has no wheel) does not resolve."""
    text = CONSTRAINTS.read_text(encoding="utf-8").replace("numpy==2.2.4", "numpy==1.24.2")
    bookworm = tmp_path / "constraints.txt"
    bookworm.write_text(text, encoding="utf-8")
    with pytest.raises(BundleError, match="numpy"):
        pip_download(wheel, bookworm, tmp_path / "wheels")
