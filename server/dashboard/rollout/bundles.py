"""The signed release bundles the server offers its gates, and where a gate fetches one.

The releases folder (`--releases DIR`, server.toml's `releases`) holds what `gatescan release
make|sign` wrote: `gatescan-VERSION.release.tar`. The dashboard serves each such file read-only
at `/releases/NAME`, without a login: the gate's updater (device/update/updater.py) downloads
with Python's urllib and no credentials, and what it trusts is the bundle's Ed25519 signature
under a release key in the gate's own /etc/gatescan/release-keys.pub, checked before anything
of the bundle is used. A bundle holds gatescan's wheel and its constraints (software anyone may
read), never a secret. A gate is told `RELEASES_URL/NAME` (`--releases-url`, the address gates
reach the dashboard's proxy at, e.g. https://dashboard.example.com/releases): over https the
updater checks the certificate against the gate's system CAs (a public certificate, or the
site CA installed into the gate's system store); a plain http URL works too, since the
signature decides, at the cost of telling an eavesdropper which version a gate fetches.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from protocol.release_bundle import is_version, version_key

_BUNDLE = re.compile(r"gatescan-(?P<version>[0-9A-Za-z.]{1,60})\.release\.tar")


def bundle_name(version: str) -> str:
    """As server/release/signing.py names a bundle."""
    return f"gatescan-{version}.release.tar"


def offered(folder: Path | None) -> list[str]:
    """The versions of the bundles in `folder`, newest first; [] without one."""
    if folder is None or not folder.is_dir():
        return []
    versions = []
    for path in folder.iterdir():
        found = _BUNDLE.fullmatch(path.name)
        if found and is_version(found["version"]) and path.is_file() and not path.is_symlink():
            versions.append(found["version"])
    return sorted(versions, key=version_key, reverse=True)


def bundle_url(base: str, version: str) -> str:
    return f"{base.rstrip('/')}/{bundle_name(version)}"


def releases_router(folder: Path | None) -> APIRouter:
    """GET /releases/{name}: a bundle of the folder, by its exact name; 404 for anything else
    (no listing, no path, no link followed)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/releases/{name}")
    def release_bundle(name: str) -> Response:
        found = _BUNDLE.fullmatch(name)
        if folder is None or found is None or found["version"] not in offered(folder):
            raise HTTPException(404, "no such release")
        return FileResponse(folder / name, media_type="application/x-tar", filename=name)

    return router
