"""Small files replaced whole: a temp file beside the target, written, fsync'd, renamed over it,
and the folder fsync'd. After a kill or a power cut the file is the old one or the new one,
never half of either. What the gate's identity (device/enrolment/identity.py) and the site
policy it holds (device/site_policy/files.py) are kept with."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`, atomically and durably; the file gets `mode`."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits off
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent)


def fsync_directory(folder: Path) -> None:
    """Make a rename, a new entry or a removal in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
