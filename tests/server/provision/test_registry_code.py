"""`gatescan provision --config server.toml`: the enrolment code from the gate registry, on a
real site init'd folder and its SQLite registry. The registry keeps only a token's SHA-256, so
provision issues the pending gate a new code (the earlier card's token is then unknown); an
enrolled, revoked or retired gate is refused with what to run; an unknown gate names `gate add`;
a code file and the registry at once is an error."""

from __future__ import annotations

import hashlib
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from protocol.enrolment import ENROLMENT_FILE_NAME, EnrolmentCode, parse_enrolment_code
from server.enrolment.tokens import ca_der, token_digest
from server.provision.boot_files import USER_DATA
from server.site.server_config import load_server_config
from server.store.database import Store
from server.store.gates import GateRegistry, Reported
from tests.server.provision.conftest import Provision, WrittenCard
from tests.support.cli import run_gatescan

GATE = "gate-hq-01"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    done = run_gatescan(["site", "init", str(folder), "--host", "broker.lan",
                         "--mqtt-port", "18999"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder / "server.toml"


@pytest.fixture
def registry(config: Path) -> GateRegistry:
    db = load_server_config(config).db
    assert db is not None
    return GateRegistry(Store(db).engine)


def gate_add(config: Path, tmp_path: Path, gate: str = GATE) -> EnrolmentCode:
    """`gatescan gate add` as an admin runs it: the code it printed."""
    done = run_gatescan(["gate", "add", gate, "--site", "hq", "--qr", str(tmp_path / "c.png"),
                         "--config", str(config)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return parse_enrolment_code(re.search(r"code: (\S+)", done.stdout).group(1))  # type: ignore[union-attr]


def card_code(card: WrittenCard) -> tuple[str, Path]:
    """The enrolment file's content as user-data writes it, and the file that holds it."""
    files = yaml.safe_load(card.text(USER_DATA))["write_files"]
    entry = next(f for f in files if f["path"] == f"/etc/gatescan/{ENROLMENT_FILE_NAME}")
    assert entry["permissions"] == "0600"
    return entry["content"].strip(), card.out / USER_DATA


def test_a_pending_gate_gets_a_new_code_the_registry_accepts_and_the_old_one_is_void(
    provision: Provision, config: Path, registry: GateRegistry, tmp_path: Path
) -> None:
    first = gate_add(config, tmp_path)

    card = provision("--config", str(config), code=False)

    assert card.exit_code == 0, card.stderr
    text, holder = card_code(card)
    code = parse_enrolment_code(text)
    site = load_server_config(config)
    assert code.server == site.enrol_url == "https://broker.lan:8443"
    assert site.mqtt.ca_file is not None
    assert code.ca_sha256 == first.ca_sha256  # the installation's CA, as gate add put it
    assert code.ca_sha256 == hashlib.sha256(ca_der(site.mqtt.ca_file.read_bytes())).hexdigest()
    gate = registry.by_token(token_digest(code.token))
    assert gate is not None and gate.device_id == GATE and gate.token_open
    assert gate.token_expires_at.replace(tzinfo=UTC) > datetime.now(UTC)
    assert registry.by_token(token_digest(first.token)) is None  # the earlier card enrols nothing
    assert code.token != first.token
    # Said, without the code; the code only in the 0600 user-data.
    assert "a new enrolment code issued" in card.stderr
    assert "earlier card no longer enrols" in card.stderr
    assert code.token not in card.stdout + card.stderr
    holders = [
        p for p in card.out.rglob("*") if p.is_file() and code.token.encode() in p.read_bytes()
    ]
    assert holders == [holder]
    assert stat.S_IMODE(holder.stat().st_mode) == 0o600
    # The exchange would take it: pending, this token, once.
    assert registry.enrol(GATE, token_digest(code.token), Reported(), datetime.now(UTC))


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("enrolled", f"is enrolled: a new card would take its identity. If this card is for a Pi"
                     f" that replaces it, run `gatescan gate replace {GATE} --qr"),
        ("revoked", f"is revoked: to bring it back, run `gatescan gate replace {GATE}"),
        ("retired", "is retired: register the new gate under a new id (`gatescan gate add"),
    ],
)  # fmt: skip
def test_a_gate_that_is_not_pending_is_refused_with_what_to_run(
    provision: Provision,
    config: Path,
    registry: GateRegistry,
    tmp_path: Path,
    state: str,
    said: str,
) -> None:
    first = gate_add(config, tmp_path)
    now = datetime.now(UTC)
    assert registry.enrol(GATE, token_digest(first.token), Reported(), now)
    if state != "enrolled":
        registry.set_state(GATE, state, now)  # type: ignore[arg-type]

    card = provision("--config", str(config), code=False)

    assert card.exit_code == 2 and said in card.stderr, card.stderr
    gate = registry.get(GATE)
    assert gate is not None and gate.state == state
    assert gate.token_sha256 == token_digest(first.token)  # nothing issued
    assert not (card.out / USER_DATA).exists()


def test_an_unknown_gate_names_gate_add(provision: Provision, config: Path, tmp_path: Path) -> None:
    card = provision("--config", str(config), code=False)  # no gate added: no database yet
    assert card.exit_code == 3
    assert f"no gate '{GATE}' is registered: run `gatescan gate add {GATE} --site" in card.stderr

    gate_add(config, tmp_path, "gate-hq-02")
    card = provision("--config", str(config), code=False)
    assert card.exit_code == 3
    assert f"no gate '{GATE}' is registered: run `gatescan gate add {GATE} --site" in card.stderr
    assert not (card.out / USER_DATA).exists()


def test_a_code_file_and_the_registry_at_once_is_an_error(
    provision: Provision, config: Path, registry: GateRegistry, tmp_path: Path
) -> None:
    first = gate_add(config, tmp_path)
    card = provision("--config", str(config))  # and the fixture's --enrolment-code-file
    assert card.exit_code == 2
    assert "--enrolment-code-file or the registry (--config/--db), not both" in card.stderr
    gate = registry.get(GATE)
    assert gate is not None and gate.token_sha256 == token_digest(first.token)


def test_a_code_file_still_makes_a_card_without_a_registry(provision: Provision) -> None:
    card = provision()
    assert card.exit_code == 0, card.stderr
    assert card_code(card)[0] == card.code
    assert "new enrolment code" not in card.stderr
