"""File operations that hold across a kill or a power cut: the journal's files are made of these.

A write is durable when its bytes are fsync'd (or fdatasync'd); a new name in a directory (a
created or renamed file) is durable only once the directory itself is fsync'd. Damaged bytes are
never deleted: they are kept aside as `<name>.corrupt-<UTC time>` for a person to look at. A temp
file (`.<name>.*.tmp`) never holds committed data, so one left by a killed writer is removed.
"""

import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

# Writes all of `data` to the open file descriptor. The seam for simulating a full or failing disk.
FileWriter = Callable[[int, bytes], None]

TEMP_SUFFIX = ".tmp"
CORRUPT_MARK = ".corrupt-"


def write_fully(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory_durably(directory: Path) -> None:
    """Create `directory` and its missing parents, fsyncing each parent that gained an entry."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_directory(path.parent)


def keep_aside(path: Path, data: bytes) -> Path:
    """Durably save `data` (damaged bytes of `path`) as `<name>.corrupt-<UTC time>` for people."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}-{counter}")
        counter += 1
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        write_fully(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)
    return target


def remove_stray_temp_files(directory: Path, name_prefix: str = "") -> list[Path]:
    """Delete temp files that a killed writer left behind; they never hold committed data."""
    removed = []
    for stray in directory.glob(f".{name_prefix}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()
            removed.append(stray)
    if removed:
        logger.info("removed %d temp file(s) left by an interrupted write", len(removed))
    return removed
