"""A gate's card, written by `gatescan provision` into tmp_path, for the provisioning tests.

The wheel is built once per session (from this tree, as the command builds it) and handed to
each card with --wheel, so that a test pays for one build, not one per card."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatescan.cli import main
from protocol.enrolment import EnrolmentCode
from server.provision.bundle import build_wheel

TOKEN = "tok_" + "Q7x2" * 10
CA = "c0ffee" * 10 + "abcd"
PSK = "lotus gate 2026 passphrase"
SSID = "Cổng HQ"


@dataclass(frozen=True)
class WrittenCard:
    out: Path
    code: str
    exit_code: int
    stdout: str
    stderr: str

    def text(self, name: str) -> str:
        return (self.out / name).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """The technician's files: the enrolment code, the Wi-Fi passphrase, an SSH public key."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    code = EnrolmentCode(version=1, server="https://broker.lan:8443", token=TOKEN, ca_sha256=CA)
    (folder / "code.txt").write_text(code.text() + "\n", encoding="utf-8")
    (folder / "psk").write_text(PSK + "\n", encoding="utf-8")
    # A real ed25519 public key line (its type, then base64 of the same type and 32 bytes).
    (folder / "tech.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFllIlwJmIfi1H/LopODUGS20tD8fZyuDBO1W0RzffVD"
        " tech@lap\n",
        encoding="utf-8",
    )
    return folder


Provision = Callable[..., WrittenCard]


@pytest.fixture
def provision(
    tmp_path: Path, inputs: Path, wheel: Path, capsys: pytest.CaptureFixture[str]
) -> Provision:
    def run(
        *extra: str,
        gate: str = "gate-hq-01",
        wifi: bool = True,
        ssh: bool = True,
        code: bool = True,
    ) -> WrittenCard:
        out = tmp_path / "card"
        argv = ["provision", f"--gate={gate}", "--out", str(out), "--wheel", str(wheel)]
        code_file = inputs / "code.txt"
        if code:
            argv += ["--enrolment-code-file", str(code_file)]
        code_text = code_file.read_text().strip() if code_file.exists() else ""
        if wifi:
            argv += ["--wifi-ssid", SSID, "--wifi-psk-file", str(inputs / "psk")]
        if ssh:
            argv += ["--ssh-key", str(inputs / "tech.pub")]
        exit_code = main([*argv, *extra])
        said = capsys.readouterr()
        return WrittenCard(out, code_text, exit_code, said.out, said.err)

    return run
