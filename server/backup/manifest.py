"""A backup's manifest: what each file is, its mode, its size and its SHA-256, and what the backup
was taken from, when and by which version.

    Manifest.read(folder) -> Manifest        (BackupError if it is not a gatescan backup)
    manifest.write(folder)
    manifest.check(folder) -> []             the files missing or not matching, one line each

Paths are relative to the backup's folder, POSIX style, and never leave it (`..` or an absolute
path is refused when the manifest is read).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = "gatescan-backup/1"
SITE_FOLDER = "site"  # the installation's files, at their paths relative to it
DATABASE_FOLDER = "database"
_CHUNK = 1024 * 1024


class BackupError(ValueError):
    """A backup or restore that cannot be done; the message says what to change."""


@dataclass(frozen=True)
class BackedUpFile:
    path: str  # relative to the backup's folder: site/ca.key, database/gatescan.db
    what: str
    mode: int  # the permission bits it had, restored with it
    size: int
    sha256: str

    @property
    def site_path(self) -> PurePosixPath | None:
        """Its path in the installation's folder, for a file of the installation."""
        parts = PurePosixPath(self.path).parts
        return PurePosixPath(*parts[1:]) if parts[0] == SITE_FOLDER else None


@dataclass(frozen=True)
class Manifest:
    created_at: str  # ISO 8601, UTC
    gatescan_version: str
    site_dir: str  # the installation's folder it was taken from
    database: str  # the database URL, its password left out
    database_kind: str  # "sqlite" or "postgresql"
    files: tuple[BackedUpFile, ...]

    def write(self, folder: Path) -> Path:
        body = {"format": FORMAT, **asdict(self)}
        for entry in body["files"]:
            entry["mode"] = f"{entry['mode']:04o}"
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_NAME
        try:
            body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(f"{folder} is not a gatescan backup: no {MANIFEST_NAME}") from None
        except (OSError, ValueError) as exc:
            raise BackupError(f"{path} cannot be read: {exc}") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise BackupError(f"{path}: not a {FORMAT} manifest")
        try:
            files = tuple(
                BackedUpFile(
                    path=_inside(str(entry["path"])),
                    what=str(entry["what"]),
                    mode=int(str(entry["mode"]), 8),
                    size=int(entry["size"]),
                    sha256=str(entry["sha256"]),
                )
                for entry in body["files"]
            )
            return cls(
                created_at=str(body["created_at"]),
                gatescan_version=str(body["gatescan_version"]),
                site_dir=str(body["site_dir"]),
                database=str(body["database"]),
                database_kind=str(body["database_kind"]),
                files=files,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"{path}: a field is missing or wrong ({exc})") from None

    def check(self, folder: Path) -> list[str]:
        """Every file of the manifest that is missing, or whose size or SHA-256 differs."""
        problems = []
        for entry in self.files:
            path = folder / entry.path
            if not path.is_file():
                problems.append(f"{entry.path}: missing")
            elif path.stat().st_size != entry.size or sha256_of(path) != entry.sha256:
                problems.append(f"{entry.path}: its SHA-256 is not the manifest's (changed)")
        return problems


def backed_up(folder: Path, path: Path, what: str) -> BackedUpFile:
    """The manifest's entry for a file already copied into the backup's folder."""
    stat = path.stat()
    return BackedUpFile(
        path=path.relative_to(folder).as_posix(),
        what=what,
        mode=stat.st_mode & 0o777,
        size=stat.st_size,
        sha256=sha256_of(path),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(text: str) -> str:
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise ValueError(f"path {text!r} leaves the backup's folder")
    if path.parts[0] not in (SITE_FOLDER, DATABASE_FOLDER):
        raise ValueError(f"path {text!r} is not under {SITE_FOLDER}/ or {DATABASE_FOLDER}/")
    return path.as_posix()
