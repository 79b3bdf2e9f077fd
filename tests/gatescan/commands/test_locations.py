"""`gatescan location add|list|disable|enable|rekey` (issue 18), as an admin runs them on a
SQLite file: the check-in URL printed, the QR read back by the gates' decoder, the poster
written, each change audited with its site; no public address is a clear refusal."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import pytest

from device.decode.backends import make_decoder
from server.locations.records import Locations
from server.store.audit import AuditLog
from server.store.database import Store
from tests.support.cli import run_gatescan, run_gatescan_here
from tests.support.pdf import page_mm, pdf_qr, pdf_text

PUBLIC = "https://checkin.example.vn"
URL = re.compile(r"check-in URL: (\S+)")


def gatescan(*args: str) -> tuple[int, str, str]:
    done = run_gatescan_here(list(args))
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "gatescan.db")


def _read_qr(path: Path) -> list[str]:
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return [code.text for code in make_decoder("auto").decode(grey)]


def test_add_prints_the_url_writes_the_qr_and_poster_and_audits(db: str, tmp_path: Path) -> None:
    qr, poster = tmp_path / "lobby.png", tmp_path / "lobby.svg"
    code, out, err = gatescan("location", "add", "Quầy lễ tân", "--site", "hq", "--db", db,
                              "--public-url", PUBLIC, "--qr", str(qr), "--poster", str(poster),
                              "--size", "a5")  # fmt: skip
    assert code == 0, err
    url = URL.search(out)[1]  # type: ignore[index]
    store = Store(db)
    try:
        [made] = Locations(store.engine).listed()
        assert url == f"{PUBLIC}/c/{made.token}" and made.location_id in out
        assert _read_qr(qr) == [url]
        svg = poster.read_text(encoding="utf-8")
        assert "Quầy lễ tân" in svg and url in svg and 'width="148mm"' in svg
        [row] = AuditLog(store.engine).rows(action="location")
        assert (row.subject, row.site_id, row.details["change"]) == (
            made.location_id, "hq", "location add"
        )  # fmt: skip
    finally:
        store.close()

    code, out, _ = gatescan("location", "list", "--db", db)
    assert code == 0 and made.location_id in out and "Quầy lễ tân" in out and "yes" in out


def test_disable_enable_and_rekey_change_what_a_poster_opens(db: str, tmp_path: Path) -> None:
    code, out, _ = gatescan("location", "add", "Sảnh", "--site", "hq", "--db", db,
                            "--public-url", PUBLIC, "--qr", str(tmp_path / "a.png"))  # fmt: skip
    assert code == 0
    old_token = URL.search(out)[1].rsplit("/", 1)[1]  # type: ignore[index]
    location_id = old_token.split(".")[0]
    store = Store(db)
    try:
        rows = Locations(store.engine)
        assert gatescan("location", "disable", location_id, "--db", db)[0] == 0
        assert rows.by_token(old_token) is None
        assert gatescan("location", "enable", location_id, "--db", db)[0] == 0
        assert rows.by_token(old_token) is not None
        new_qr = tmp_path / "b.png"
        code, out, err = gatescan("location", "rekey", location_id, "--db", db, "--public-url",
                                  PUBLIC + "/", "--qr", str(new_qr))  # fmt: skip
        assert code == 0, err
        new_url = URL.search(out)[1]  # type: ignore[index]
        assert rows.by_token(old_token) is None, "a poster printed before stops working"
        assert rows.by_token(new_url.rsplit("/", 1)[1]) is not None
        assert _read_qr(new_qr) == [new_url] and new_url.startswith(PUBLIC + "/c/loc-")
        changes = [row.details["change"] for row in AuditLog(store.engine).rows(action="location")]
        assert changes == ["location rekey", "location enable", "location disable", "location add"]
    finally:
        store.close()
    for command in ("disable", "enable"):
        assert gatescan("location", command, "loc-aaaaaaaaaa", "--db", db)[0] == 3
    no_such = gatescan("location", "rekey", "loc-aaaaaaaaaa", "--db", db, "--public-url", PUBLIC,
                       "--qr", str(tmp_path / "c.png"))  # fmt: skip
    assert no_such[0] == 3 and "no location" in no_such[2]


@pytest.mark.parametrize("size", ["a4", "a5"])
def test_add_writes_a_pdf_poster_whose_qr_is_the_url(db: str, tmp_path: Path, size: str) -> None:
    poster = tmp_path / "lobby.PDF"  # the suffix decides, whatever its case
    code, out, err = gatescan("location", "add", "Quầy lễ tân", "--site", "hq", "--db", db,
                              "--public-url", PUBLIC, "--poster", str(poster),
                              "--size", size)  # fmt: skip
    assert code == 0, err
    url = URL.search(out)[1]  # type: ignore[index]
    pdf = poster.read_bytes()
    assert pdf.startswith(b"%PDF-") and "PDF" in out
    assert page_mm(pdf) == [{"a4": (210, 297), "a5": (148, 210)}[size]]
    assert "Quầy lễ tân" in pdf_text(pdf) and pdf_qr(pdf, tmp_path) == [url]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ([], "public address"),
        (["--public-url", "checkin.example.vn"], "--public-url"),
        (["--public-url", "https://x.example/?a=1"], "query"),
        (["--public-url", PUBLIC, "--qr", "x.jpg"], ".png"),
        (["--public-url", PUBLIC, "--poster", "x.doc"], ".pdf or .svg"),
        (["--public-url", PUBLIC], "--qr"),
    ],
)
def test_add_refuses_what_it_cannot_print(db: str, extra: list[str], says: str) -> None:
    args = ["location", "add", "Sảnh", "--site", "hq", "--db", db, *extra]
    if not extra:
        args = [*args, "--qr", "x.png"]
    code, _, err = gatescan(*args)
    assert code == 2 and says in err, err
    store = Store(db)
    try:
        assert Locations(store.engine).listed() == []
    finally:
        store.close()


def test_a_name_on_two_lines_is_refused(db: str, tmp_path: Path) -> None:
    code, _, err = gatescan("location", "add", "Sảnh\nhai", "--site", "hq", "--db", db,
                            "--public-url", PUBLIC, "--qr", str(tmp_path / "a.png"))  # fmt: skip
    assert code == 2 and "one line" in err


def test_the_public_url_comes_from_server_toml(tmp_path: Path) -> None:
    """A real process, as an admin runs it: server.toml's public_url and db are the defaults."""
    config = tmp_path / "server.toml"
    config.write_text(f'db = "gatescan.db"\npublic_url = "{PUBLIC}"\n', encoding="utf-8")
    done = run_gatescan(["location", "add", "Cổng chợ", "--site", "market", "--config",
                         str(config), "--qr", str(tmp_path / "q.png")])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"check-in URL: {PUBLIC}/c/loc-" in done.stdout
    assert (tmp_path / "gatescan.db").exists()
    config.write_text('public_ur = "https://x.example"\n', encoding="utf-8")
    done = run_gatescan(["location", "list", "--config", str(config)])
    assert done.returncode == 2 and "did you mean 'public_url'" in done.stderr


@pytest.mark.parametrize("command", ["web", "server"])
def test_the_server_refuses_a_public_url_a_phone_could_not_open(db: str, command: str) -> None:
    code, _, err = gatescan(command, "--db", db, "--public-url", "ftp://checkin.example.vn")
    assert code == 2 and "https://" in err
