"""A temporary folder standing in for a gate's /: /opt/gatescan, /etc/gatescan's trusted keys,
the agent's data dir and the updater's; small real releases signed by the real `gatescan release`
commands; and `gatescan update` run as a process, its agent a child it started.

A test release is a `tree` release: a folder with `bin/gatescan`, a Python script that, run as
`gatescan agent --data-dir D`, behaves as its kind says:

- `good`: READY=1 on $NOTIFY_SOCKET, then the health file (device/update/health.py's own
  HealthBeacon): a processed frame and the broker; then waits for SIGTERM.
- `no_broker`: READY=1 and a processed frame, never the broker (a release that cannot log in).
- `no_ready`: never says READY (hangs at start).
- `crash`: exits 1 at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from device.update.layout import Layout
from tests.support.paths import PROJECT_ROOT

AGENT_SCRIPT = """\
#!{python}
import os, signal, socket, sys, time
from pathlib import Path
from device.update.health import HealthBeacon

KIND = {kind!r}
VERSION = {version!r}
args = sys.argv[1:]
if args[:1] != ["agent"]:
    print("gatescan", VERSION)
    sys.exit(0)
data_dir = Path(args[args.index("--data-dir") + 1])
if KIND == "crash":
    sys.exit(1)
if KIND == "no_ready":
    time.sleep(3600)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
beacon = HealthBeacon(data_dir, VERSION)
time.sleep(0.2)  # a camera's first frame
beacon.frame_processed()
if KIND == "good":
    time.sleep(0.2)  # the broker's CONNACK
    beacon.link(True)
while True:
    time.sleep(1)
"""


@dataclass
class GateRoot:
    root: Path
    work: Path
    key: Path  # the trusted release key (private, 0600)

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    def release(self, version: str, kind: str = "good", key: Path | None = None) -> Path:
        """A signed bundle of a test release, made by `gatescan release sign`."""
        payload = self.work / f"payload-{version}-{kind}"
        (payload / "bin").mkdir(parents=True, exist_ok=True)
        script = payload / "bin" / "gatescan"
        script.write_text(
            AGENT_SCRIPT.format(python=sys.executable, kind=kind, version=version),
            encoding="utf-8",
        )
        script.chmod(0o755)
        (payload / "VERSION").write_text(version + "\n", encoding="utf-8")
        signer = (key or self.key).parent.name
        out = self.work / f"gatescan-{version}-{kind}-{signer}.release.tar"
        done = cli(
            "release",
            "sign",
            str(payload),
            "--version",
            version,
            "--install",
            "tree",
            "--key",
            str(key or self.key),
            "--out",
            str(out),
        )
        assert done.returncode == 0, done.stderr
        return out

    def update_args(self, *args: str, window: float = 5.0) -> list[str]:
        agent = f"agent --data-dir {self.layout.agent_data}"
        return [
            "update",
            *args,
            "--root",
            str(self.root),
            "--health-window",
            str(window),
            "--agent-here",
            agent,
        ]

    def update(self, *args: str, window: float = 5.0) -> subprocess.CompletedProcess[str]:
        return cli(*self.update_args(*args, window=window))

    def agent_pid(self) -> int | None:
        try:
            pid = int((self.layout.state / "agent.pid").read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def stop_agent(self) -> None:
        """The agent the updater started (the pid it wrote), stopped: the test's own process."""
        pid = self.agent_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


def cli(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatescan.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env(), **(extra_env or {})},
        check=False,
    )


def keygen(folder: Path) -> tuple[Path, str]:
    """`gatescan release keygen`: the private key's path and the line a gate trusts."""
    done = cli("release", "keygen", "--dir", str(folder), "--name", "test-release")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("ed25519:"), done.stdout
    return folder / "release-key.pem", line


def new_gate_root(tmp_path: Path) -> GateRoot:
    root = tmp_path / "root"
    key, line = keygen(tmp_path / "keys")
    keys_file = Layout(root).trusted_keys
    keys_file.parent.mkdir(parents=True)
    keys_file.write_text(f"# the installation's release key\n{line}\n", encoding="utf-8")
    Layout(root).agent_data.mkdir(parents=True, mode=0o700)
    work = tmp_path / "work"
    work.mkdir()
    return GateRoot(root=root, work=work, key=key)


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip()
