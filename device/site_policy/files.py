"""The held policy on the gate's own disk, so a gate restarted with no network decides with it.

    <data_dir>/site_policy/<site level>/manifest.json     the manifest, as the server sent it
    <data_dir>/site_policy/<site level>/<kind>-<xx>.bin   each bucket held, as the server sent it

Each file is the message's own bytes, checked again when it is read. A write goes to a temp file
(`.<name>.<random>.tmp`, 0600), is fsync'd, renamed over its name, and the folder fsync'd: a file
is the old message or the new one, never half of either, after a kill or a power cut. A file
that no longer reads as a message (a damaged card) is logged and left where it is for a person
to look at; the gate decides with what else it holds, and the server's next message replaces it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from device.site_policy.held import EMPTY_POLICY, HeldPolicy
from device.system.atomic_files import TEMP_SUFFIX, fsync_directory, write_atomically
from protocol.site_policy import (
    LIST_KINDS,
    ListBucket,
    PolicyFormatError,
    SitePolicy,
    decode_bucket,
    decode_manifest,
    site_topic_level,
)

log = logging.getLogger("gatescan.site_policy")

FOLDER = "site_policy"
MANIFEST_FILE = "manifest.json"
_BUCKET_FILE = re.compile(rf"^({'|'.join(LIST_KINDS)})-([0-9a-f]{{2}})\.bin$")


def policy_folder(data_dir: Path, site_id: str) -> Path:
    return data_dir / FOLDER / site_topic_level(site_id)


def bucket_file(kind: str, bucket: int) -> str:
    if kind not in LIST_KINDS or not 0 <= bucket <= 0xFF:
        raise ValueError(f"no bucket file for {kind!r} {bucket}")
    return f"{kind}-{bucket:02x}.bin"


def write_file(folder: Path, name: str, data: bytes) -> None:
    """Replace `folder/name` with `data` atomically and durably."""
    _make_folder(folder)
    write_atomically(folder / name, data)


def remove_file(folder: Path, name: str) -> None:
    try:
        (folder / name).unlink()
    except FileNotFoundError:
        return
    fsync_directory(folder)


def load_policy(folder: Path, site_id: str) -> HeldPolicy:
    """What the folder holds, each file checked as a message is; EMPTY_POLICY when nothing is.
    Never raises for what is in the folder: a file that cannot be used is logged and left."""
    if not folder.is_dir():
        return EMPTY_POLICY
    for stray in folder.glob(f".*{TEMP_SUFFIX}"):  # a killed writer's; never committed data
        with contextlib.suppress(OSError):
            stray.unlink()
    manifest = _load_manifest(folder / MANIFEST_FILE, site_id)
    buckets: dict[tuple[str, int], ListBucket] = {}
    for path in sorted(folder.iterdir()):
        named = _BUCKET_FILE.match(path.name)
        if named is None:
            continue
        bucket = _load_bucket(path, named.group(1), int(named.group(2), 16))
        if bucket is not None:
            buckets[bucket.kind, bucket.bucket] = bucket
    try:
        return HeldPolicy.of(manifest, buckets)
    except ValueError as exc:  # a key that is no Ed25519 key: the manifest cannot be used
        log.error("site policy: the held manifest cannot be used (%s); lists kept", exc)
        return HeldPolicy.of(None, buckets)


def _load_manifest(path: Path, site_id: str) -> SitePolicy | None:
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("site policy: cannot read %s (%s)", path, exc.strerror)
        return None
    try:
        manifest = decode_manifest(payload)
    except PolicyFormatError as exc:
        log.error("site policy: %s does not read as a manifest (%s); left for a person", path, exc)
        return None
    if manifest.site_id != site_id:
        log.error("site policy: %s is another site's; not used", path)
        return None
    return manifest


def _load_bucket(path: Path, kind: str, number: int) -> ListBucket | None:
    try:
        bucket = decode_bucket(path.read_bytes())
    except OSError as exc:
        log.error("site policy: cannot read %s (%s)", path, exc.strerror)
        return None
    except PolicyFormatError as exc:
        log.error("site policy: %s does not read as a bucket (%s); left for a person", path, exc)
        return None
    if (bucket.kind, bucket.bucket) != (kind, number):
        log.error("site policy: %s holds another bucket than its name says; not used", path)
        return None
    return bucket


def _make_folder(folder: Path) -> None:
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
        fsync_directory(path.parent)
