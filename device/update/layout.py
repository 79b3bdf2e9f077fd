"""Where releases live on a gate, and the links that say which one runs.

    /opt/gatescan/releases/VERSION/     one release, whole: made beside the others under a
                                        temporary name and renamed into place once installed
                                        (RELEASE_MARKER, written last, holds its version)
    /opt/gatescan/current  -> releases/V     the release the agent's unit runs
    /opt/gatescan/previous -> releases/U     the one before: where a rollback goes
    /etc/gatescan/release-keys.pub          the release keys this gate trusts (root's)
    /var/lib/gatescan/update-request.json   an update asked for by the agent (its data dir)
    /var/lib/gatescan-updater/              the updater's own: its result, its progress, a lock

A link is replaced by making a new link under a temporary name and renaming it over the old
one: rename(2) is atomic, so after a crash or a power cut `current` names the old release or
the new one, never nothing and never a half-made folder. Everything sits under `root` ("/" on a
gate; a temporary folder in the tests).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from device.system.atomic_files import fsync_directory

RELEASE_MARKER = ".gatescan-release"
REQUEST_NAME = "update-request.json"
RESULT_NAME = "result.json"
PROGRESS_NAME = "progress.json"
LOCK_NAME = "lock"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class Layout:
    root: Path = Path("/")

    @property
    def opt(self) -> Path:
        return self.root / "opt" / "gatescan"

    @property
    def releases(self) -> Path:
        return self.opt / "releases"

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def previous(self) -> Path:
        return self.opt / "previous"

    @property
    def trusted_keys(self) -> Path:
        return self.root / "etc" / "gatescan" / "release-keys.pub"

    @property
    def agent_data(self) -> Path:
        """The agent's data dir (its unit's StateDirectory=): the request and its health."""
        return self.root / "var" / "lib" / "gatescan"

    @property
    def request(self) -> Path:
        return self.agent_data / REQUEST_NAME

    @property
    def state(self) -> Path:
        """The updater's own folder (its unit's StateDirectory=), root's, readable by all."""
        return self.root / "var" / "lib" / "gatescan-updater"

    @property
    def result(self) -> Path:
        return self.state / RESULT_NAME

    @property
    def progress(self) -> Path:
        return self.state / PROGRESS_NAME

    def release(self, version: str) -> Path:
        return self.releases / version

    def linked_version(self, link: Path) -> str | None:
        """The version a link names (`releases/V` -> V), None when there is no link."""
        try:
            return Path(os.readlink(link)).name
        except (FileNotFoundError, OSError):
            return None

    def running_version(self) -> str | None:
        return self.linked_version(self.current)


def is_whole(release: Path) -> bool:
    """A release folder that was installed to the end: its marker names its own version."""
    try:
        return (release / RELEASE_MARKER).read_text(encoding="utf-8").strip() == release.name
    except OSError:
        return False


def mark_whole(release: Path, version: str) -> None:
    marker = release / RELEASE_MARKER
    marker.write_text(version + "\n", encoding="utf-8")
    with marker.open("rb") as written:
        os.fsync(written.fileno())


def point(link: Path, target: Path) -> None:
    """Make `link` name `target` (relative, within its folder), atomically and durably."""
    relative = os.path.relpath(target, link.parent)
    temp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.new")
    os.symlink(relative, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(link.parent)
