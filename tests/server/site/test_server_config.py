"""server.toml: keys named like the flags, relative paths anchored at the file's folder, and
every mistake a line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_config.errors import ConfigError
from server.site.server_config import load_server_config


def config_file(folder: Path, text: str) -> Path:
    path = folder / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("gatescan.db", "{d}/gatescan.db"),
        ("sqlite:///gatescan.db", "sqlite:///{d}/gatescan.db"),
        ("sqlite:////var/lib/g.db", "sqlite:////var/lib/g.db"),
        ("/var/lib/g.db", "/var/lib/g.db"),
        ("postgresql+psycopg://db.lan/gatescan", "postgresql+psycopg://db.lan/gatescan"),
    ],
)
def test_a_relative_sqlite_database_is_in_the_files_folder(
    tmp_path: Path, db: str, expected: str
) -> None:
    config = load_server_config(config_file(tmp_path, f'db = "{db}"\n'))

    assert config.db == expected.format(d=tmp_path)


def test_keys_the_file_leaves_out_keep_the_flags_defaults(tmp_path: Path) -> None:
    config = load_server_config(config_file(tmp_path, '[mqtt]\nclient = "stock"\n'))

    assert config.flag_values() == {"mqtt_client": "stock"}


def test_every_problem_is_a_line_naming_its_key(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        'listen = "8080"\nretention_days = -1\nlanguage = "fr"\n[mqtt]\nbroker = "http://b.lan"\n',
    )

    with pytest.raises(ConfigError) as caught:
        load_server_config(path)

    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}: listen: expected HOST:PORT, e.g. 127.0.0.1:8080, got '8080'",
        f"{path}: language: expected one of 'vi', 'en', got 'fr'",
        f"{path}: retention_days: must be at least 0, got -1",
        f"{path}: mqtt.broker: 'http://b.lan' is not a broker URL; use mqtt://host:port or "
        "mqtts://host:port",
    ]


def test_home_assistant_is_opt_in_and_its_files_are_anchored_at_the_folder(tmp_path: Path) -> None:
    assert load_server_config(config_file(tmp_path, "")).home_assistant is None
    path = config_file(
        tmp_path,
        '[home_assistant]\nbroker = "mqtts://ha.lan:8883"\nusername = "gatescan"\n'
        'password_file = "ha.password"\nca_file = "ha-ca.crt"\n',
    )

    config = load_server_config(path)

    assert config.home_assistant is not None
    assert config.home_assistant.password_file == tmp_path / "ha.password"
    assert config.home_assistant.ca_file == tmp_path / "ha-ca.crt"
    assert config.home_assistant.discovery_prefix == "homeassistant"
    assert config.flag_values() == {}  # a section of its own, not a flag of `gatescan server`


def test_home_assistant_mistakes_name_their_key(tmp_path: Path) -> None:
    typo = '[home_assistant]\nbroker = "mqtt://ha.lan"\nprefix = "ha"\n'
    tls = '[home_assistant]\nbroker = "mqtt://ha.lan"\nca_file = "ca.crt"\n'
    under = '[home_assistant]\nbroker = "mqtt://ha.lan"\nstate_prefix = "homeassistant/x"\n'

    said = []
    for text in (typo, tls, under):
        with pytest.raises(ConfigError) as caught:
            load_server_config(config_file(tmp_path, text))
        said.append(str(caught.value))

    assert "home_assistant.prefix: unknown key" in said[0]
    assert "ca_file is set but the broker is not mqtts://" in said[1]
    assert "state_prefix must not be under discovery_prefix" in said[2]


def test_the_releases_folder_is_anchored_and_its_url_kept(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('releases = "releases"\nreleases_url = "https://dash.example/releases"\n')
    values = load_server_config(path).flag_values()
    assert values["releases"] == tmp_path.absolute() / "releases"
    assert values["releases_url"] == "https://dash.example/releases"


CHECKIN = """
[checkin]
per_address_per_min = 30
daily_cap = 500

[checkin.sites.hq]
consent_vi = \"\"\"Công ty lưu họ tên và số điện thoại 30 ngày.

Liên hệ: phòng nhân sự.\"\"\"
health_questions = false

[[checkin.sites.hq.questions]]
vi = "Bạn có mang theo vật dụng dễ cháy không?"
en = "Are you carrying anything flammable?"
"""


def test_the_check_in_section_sets_the_limits_and_each_sites_page(tmp_path: Path) -> None:
    config = load_server_config(config_file(tmp_path, CHECKIN))

    settings = config.checkin.web_settings()
    assert settings["checkin_per_address_per_min"] == 30 and settings["checkin_daily_cap"] == 500
    assert "checkin_per_phone_per_min" not in settings, "left out: the default"
    hq = settings["checkin_sites"]["hq"]
    assert hq.consent_vi.startswith("Công ty") and not hq.health_questions
    assert [q.en for q in hq.questions] == ["Are you carrying anything flammable?"]
    assert "checkin" not in config.flag_values(), "a section, not a flag"
    assert load_server_config(config_file(tmp_path, "")).checkin.web_settings() == {
        "checkin_sites": {}
    }


def test_check_in_mistakes_name_their_key(tmp_path: Path) -> None:
    six = "".join(f'[[checkin.sites.hq.questions]]\nvi = "Câu {n}?"\n' for n in range(6))
    path = config_file(
        tmp_path,
        "[checkin]\ndaily_cap = 0\nper_adress_per_min = 3\n"
        '[checkin.sites.hq]\nconsent_vi = " "\nhealth_question = true\n'
        '[checkin.sites.b]\nconsent_en = "a\\u0007b"\n' + six.replace(".hq.", ".c."),
    )

    with pytest.raises(ConfigError) as caught:
        load_server_config(path)

    text = str(caught.value)
    assert "checkin.daily_cap: must be at least 1, got 0" in text
    assert "checkin.per_adress_per_min: unknown key; did you mean 'per_address_per_min'?" in text
    assert "checkin.sites.hq.health_question: unknown key; did you mean 'health_questions'?" in text
    assert "checkin.sites.hq.consent_vi: is empty; leave the key out to keep the default" in text
    assert "checkin.sites.b.consent_en: holds a control character (U+0007)" in text
    assert "checkin.sites.c.questions: must hold at most 5 item(s), got 6" in text
