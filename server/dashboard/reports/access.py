"""What the dashboard and the API show: fleet status, entries, contact tracing, occupancy.

Each report reads the store's tables through its engine and returns typed values (pydantic
models, so the API serialises them as they are). Personal data leaves here masked unless the
asking account's role allows otherwise, and every look at a person is written to the audit log.
"""

from __future__ import annotations

from server.accounts.users import Role


class NotAllowed(PermissionError):
    """The asking account's role lacks the right (the web layer answers 403)."""

    def __init__(self, needed: Role, what: str) -> None:
        super().__init__(f"{what} needs the {needed.label} role")
        self.needed = needed
