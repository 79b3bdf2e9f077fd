"""`gatescan key ...` and `gatescan pass ...` as an admin runs them (real SQLite):
the keys rotate and retire, an issued pass's QR (PNG and SVG) reads through the gate's decoder
to bytes that verify under the site's keys from the store, and bad input is a clear error and an
exit code, never a traceback. The command's main runs in this process (tests/support/cli.py:
run_gatescan_here), but in the first test, a real process."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.decode.backends import make_decoder
from protocol.passes import PASS_BYTES, SignedPass, parse_pass, verify_pass
from protocol.verdicts import Reason
from server.store.database import Store
from server.store.site_keys import SiteKeys
from tests.support.cli import run_gatescan, run_gatescan_here

NAME = "Nguyễn Thị Minh Khai"
WINDOW = ["--valid-from", "2026-12-01T08:00+07:00", "--valid-until", "2027-01-01T00:00+07:00"]
INSIDE = datetime(2026, 12, 15, 3, 0, tzinfo=UTC)


def gatescan(db: Path, *args: str, process: bool = False) -> tuple[int, str, str]:
    """The command's main in this process; `process`: in its own, as an admin runs it."""
    done = (run_gatescan if process else run_gatescan_here)([*args, "--db", str(db)])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gatescan.db"
    code, _, err = gatescan(path, "key", "rotate", "--site", "hq")
    assert code == 0, err
    return path


def site_keys(db: Path, site: str = "hq") -> dict[int, object]:
    store = Store(str(db))
    try:
        return SiteKeys(store.engine).public_keys(site)  # type: ignore[return-value]
    finally:
        store.close()


def issue(db: Path, qr: Path, name: str = NAME) -> tuple[str, str]:
    code, out, err = gatescan(db, "pass", "issue", name, "--site", "hq", *WINDOW, "--qr", str(qr))
    assert code == 0, err
    found = re.search(r"^pass ([0-9a-f]{16}) ", out, re.M)
    assert found is not None, out
    return found.group(1), out


def read_qr(image: np.ndarray) -> bytes:
    """The one code the gate's ensemble decoder reads in `image`, padded onto a white frame."""
    frame = np.full((720, 1280), 255, np.uint8)
    frame[100 : 100 + image.shape[0], 200 : 200 + image.shape[1]] = image
    found = make_decoder("ensemble").decode(frame)
    assert len(found) == 1
    return found[0].data


def svg_modules(svg: str) -> np.ndarray:
    """segno's SVG path drawn module by module (M/m moves, h runs of dark modules), as 0/255."""
    size = int(re.search(r'width="(\d+)"', svg).group(1)) // 8  # type: ignore[union-attr]
    path = re.search(r' d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    image = np.full((size, size), 255, np.uint8)
    x = y = 0.0
    for op, numbers in re.findall(r"([MmHh])([-\d. ]+)", path):
        values = [float(n) for n in numbers.split()]
        if op == "M":
            x, y = values
        elif op == "m":
            x, y = x + values[0], y + values[1]
        else:
            image[int(y), int(x) : int(x + values[0])] = 0
            x += values[0]
    return image


def test_key_rotate_list_and_retire(db: Path) -> None:
    code, out, err = gatescan(db, "key", "rotate", "--site", "hq", process=True)
    assert code == 0, err
    assert "key 2 (site hq) active" in out and "key 1 is verify-only" in out
    assert gatescan(db, "key", "rotate", "--site", "branch")[0] == 0

    code, out, _ = gatescan(db, "key", "list", "--site", "hq")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "hq", "verify-only"), ("2", "hq", "active")]
    assert all(re.fullmatch(r"[0-9a-f]{16}", r[-1]) for r in rows)
    assert "branch" not in out

    code, _, err = gatescan(db, "key", "retire", "2")
    assert code == 2 and "only active key" in err and "gatescan key rotate --site hq" in err
    code, _, err = gatescan(db, "key", "retire", "99")
    assert code == 3 and "no key 99" in err
    code, out, err = gatescan(db, "key", "retire", "1")
    assert code == 0, err
    assert sorted(site_keys(db)) == [2]
    assert "retired" in gatescan(db, "key", "list", "--site", "hq")[1].splitlines()[1]


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_an_issued_pass_reads_through_the_gates_decoder_and_verifies(
    db: Path, tmp_path: Path, suffix: str
) -> None:
    qr = tmp_path / f"pass{suffix}"
    pass_id, out = issue(db, qr)
    assert "QR version 5 (error correction M)" in out
    if suffix == ".png":
        image = cv2.imread(str(qr), cv2.IMREAD_GRAYSCALE)
    else:
        image = cv2.resize(svg_modules(qr.read_text()), None, fx=8, fy=8,
                           interpolation=cv2.INTER_NEAREST)  # fmt: skip
    code = read_qr(image)
    assert len(code) == PASS_BYTES
    signed = parse_pass(code)
    assert signed.body.pass_id_text() == pass_id and signed.body.issued
    assert signed.body.key_id == 1
    assert signed.body.valid_from == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert signed.body.valid_until == datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    keys = site_keys(db)
    assert verify_pass(signed, keys, INSIDE) is Reason.OK  # type: ignore[arg-type]
    assert verify_pass(signed, site_keys(db, "other"), INSIDE) is Reason.BAD_SIGNATURE  # type: ignore[arg-type]


def test_a_rotated_out_keys_pass_verifies_until_the_key_is_retired(
    db: Path, tmp_path: Path
) -> None:
    issue(db, tmp_path / "old.png")
    signed: SignedPass = parse_pass(read_qr(cv2.imread(str(tmp_path / "old.png"), 0)))
    assert gatescan(db, "key", "rotate", "--site", "hq")[0] == 0
    assert verify_pass(signed, site_keys(db), INSIDE) is Reason.OK  # type: ignore[arg-type]
    _, out = issue(db, tmp_path / "new.png")
    assert "key 2" in out
    assert gatescan(db, "key", "retire", "1")[0] == 0
    assert verify_pass(signed, site_keys(db), INSIDE) is Reason.BAD_SIGNATURE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (["--site", "nowhere", "--valid-until", "2027-01-01T00:00Z", "--qr", "p.png"], 2,
         "gatescan key rotate --site nowhere"),
        (["--site", "hq", "--valid-until", "2027-01-01T00:00", "--qr", "p.png"], 2,
         "does not say its time zone"),
        (["--site", "hq", "--valid-from", "2027-01-01T00:00+07:00", "--valid-until",
          "2026-12-31T00:00+07:00", "--qr", "p.png"], 2, "is not after the pass begins"),
        (["--site", "hq", "--valid-until", "next tuesday", "--qr", "p.png"], 2,
         "is not an ISO 8601 time"),
        (["--site", "hq", "--valid-until", "2027-01-01T00:00Z", "--qr", "p.jpg"], 2,
         "write a .png or an .svg file"),
    ],
)  # fmt: skip
def test_bad_input_to_pass_issue_is_a_clear_error(
    db: Path, tmp_path: Path, args: list[str], exit_code: int, says: str
) -> None:
    args = [str(tmp_path / a) if a.startswith("p.") else a for a in args]
    code, _, err = gatescan(db, "pass", "issue", NAME, *args)
    assert (code, err.count("\n")) == (exit_code, 1), err
    assert says in err
    assert not list(tmp_path.glob("p.*"))
    assert gatescan(db, "pass", "list")[1].count("\n") == 1  # the header alone


def test_a_vietnamese_name_round_trips_and_a_pass_is_revoked(db: Path, tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", NAME)
    pass_id, _ = issue(db, tmp_path / "p.png", decomposed)
    code, out, _ = gatescan(db, "pass", "list", "--site", "hq")
    assert code == 0
    assert NAME in out and decomposed not in out
    assert out.splitlines()[1].split()[-1] == "valid"

    code, out, err = gatescan(db, "pass", "revoke", pass_id)
    assert code == 0, err
    assert gatescan(db, "pass", "list")[1].splitlines()[1].split()[-1] == "revoked"
    code, _, err = gatescan(db, "pass", "revoke", "0123456789abcdef")
    assert code == 3 and "no pass '0123456789abcdef'" in err


# --- phones' passes ----------------------------------------------------------------------------


def test_a_phone_pass_is_a_link_whose_fragment_holds_the_pass_and_its_own_secret(db: Path) -> None:
    from base64 import urlsafe_b64decode

    from protocol.passes import PassFlags
    from protocol.rotating_passes import pass_secret
    from server.store.site_policy import rotation_secret

    code, out, err = gatescan(db, "pass", "issue", NAME, "--site", "hq", *WINDOW,
                              "--phone", "https://cong.example.vn")  # fmt: skip
    assert code == 0, err
    link = re.search(r"(https://cong\.example\.vn/pass/#v1\.\S+)", out)
    assert link is not None
    version, pass_part, secret_part, name_part = link.group(1).split("#", 1)[1].split(".")
    assert version == "v1"

    def raw(part: str) -> bytes:
        return urlsafe_b64decode(part + "=" * (-len(part) % 4))

    signed = parse_pass(raw(pass_part))
    assert signed.body.flags == PassFlags.ISSUED | PassFlags.PHONE
    assert raw(name_part).decode() == NAME
    with Store(f"sqlite:///{db}") as store:
        site_secret = rotation_secret(store.engine, "hq", INSIDE)
        keys = SiteKeys(store.engine).public_keys("hq")
    assert raw(secret_part) == pass_secret(site_secret, signed.body.pass_id)
    assert verify_pass(signed, keys, INSIDE) is Reason.OK
    # Only https (or the demo's localhost): WebCrypto runs in secure contexts only.
    code, _, err = gatescan(db, "pass", "issue", NAME, "--site", "hq", *WINDOW,
                            "--phone", "http://cong.example.vn")  # fmt: skip
    assert code == 2 and "https://" in err


def test_site_rules_set_anti_passback_and_capacity_and_refuse_nonsense(db: Path) -> None:
    from server.store.site_policy import current_policy

    code, out, err = gatescan(db, "site", "rules", "--site", "hq", "--anti-passback", "hard",
                              "--capacity", "250")  # fmt: skip
    assert code == 0, err
    assert "anti-passback hard, capacity 250" in out
    code, out, _ = gatescan(db, "site", "rules", "--site", "hq", "--capacity", "none")
    assert "anti-passback hard, capacity none" in out
    with Store(f"sqlite:///{db}") as store:
        manifest = current_policy(store.engine, "hq", INSIDE).manifest
    assert (manifest.anti_passback, manifest.capacity) == ("hard", None)
    for bad in (["--capacity", "0"], ["--capacity", "many"], ["--anti-passback", "maybe"]):
        code, _, err = gatescan(db, "site", "rules", "--site", "hq", *bad)
        assert code == 2 and err.strip(), bad
