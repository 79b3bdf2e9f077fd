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
