"""A site (its CA and the broker's certificate, as `gatescan site init` writes them) and an
enrolment server using them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.site.installation import Installation
from tests.support.tls_site import new_site, site_folder


@pytest.fixture(scope="module")
def site() -> Iterator[Installation]:
    with site_folder() as folder:
        yield new_site(folder)
