"""`gatescan config check` on a gate in access mode: with no site key and no allow list held in
its data dir (or no site policy yet) the gate would refuse every code, and the check says so."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from device.site_policy.holder import PolicyHolder
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.commands.config import run_check
from gatescan.options import EXIT_BAD_INPUT, EXIT_OK
from gatescan.testing.site_policies import SampleSite

SITE = "Bến xe Mỹ Đình"


def gate_file(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(
        f'site_id = "{SITE}"\ndata_dir = "{tmp_path / "data"}"\n[policy]\nmode = "{mode}"\n',
        encoding="utf-8",
    )
    return path


def check(path: Path) -> int:
    return run_check(argparse.Namespace(file=path))


def hold(tmp_path: Path, site: SampleSite) -> None:
    holder = PolicyHolder(SITE, tmp_path / "data")
    for topic, payload in site.messages():
        holder.handle(topic, payload)
    holder.close()


def test_access_mode_with_no_policy_held_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(gate_file(tmp_path, "access")) == EXIT_BAD_INPUT
    said = capsys.readouterr().err
    assert "access mode with no site key and no allow list: every code is refused" in said
    assert check(gate_file(tmp_path, "log")) == EXIT_OK


def test_a_site_with_no_key_and_no_allow_list_is_a_problem_and_one_key_is_enough(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hold(tmp_path, SampleSite(SITE, with_key=False))
    assert check(gate_file(tmp_path, "access")) == EXIT_BAD_INPUT
    assert "site policy version 1" in capsys.readouterr().err
    hold(tmp_path, SampleSite(SITE, version=2))
    assert check(gate_file(tmp_path, "access")) == EXIT_OK


def test_the_agents_mode_flag_overrides_the_file(tmp_path: Path) -> None:
    path = gate_file(tmp_path, "log")
    config = load_config(path, overrides=ConfigOverrides(mode="access"), env={})
    assert config.policy.mode == "access"
