"""The dashboard suite (and its login/ folder) runs on SQLite and on PostgreSQL: `store_url` (and
so `store`, `app`, `client`) once for each, but for the tests of SQLITE_ONLY, route matrices
whose subject is the guard in front of every route rather than what the routes query, which run
on SQLite alone. A module with a `store_url` fixture of its own, or a test that parametrizes
`store_url` itself (tests/server/dashboard/test_site_permissions.py), chooses for itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.support.web import BACKENDS, both_backends_with_schema

# One request per route (39 of them) with no credentials, a wrong token, a role too low: what
# they ask of the database is one session's or token's row by its digest, the statement every
# request runs, which runs on PostgreSQL in the rest of test_auth.py (sessions, expiry, tokens,
# revocation), in the PostgreSQL half of test_site_permissions.py (every route, a session per
# role) and in tests/gatescan/commands/test_accounts.py.
SQLITE_ONLY = frozenset(
    {
        "test_auth.py::test_without_credentials_the_api_answers_401_and_pages_redirect_to_login",
        "test_auth.py::test_a_wrong_bearer_token_is_401",
        "test_auth.py::test_a_role_below_the_route_s_gets_403",
    }
)


def backends_of(metafunc: pytest.Metafunc) -> tuple[str, ...]:
    name = f"{Path(metafunc.definition.path).name}::{metafunc.function.__name__}"
    return ("sqlite",) if name in SQLITE_ONLY else BACKENDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" not in metafunc.fixturenames or "store_url" in vars(metafunc.module):
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "store_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize("store_url", backends_of(metafunc), indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Path | URL:
    return both_backends_with_schema(request, tmp_path)
