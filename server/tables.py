"""The collector's database schema: entries, devices and dead letters (SQLAlchemy Core).

The SQL stays portable so PostgreSQL can take over from SQLite when one machine is not enough.
Every timestamp is stored and read as timezone-aware UTC. Columns added after a table first
shipped are added to an existing database by `add_missing_columns`, so an older database file
keeps working (a new column always has a default).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zone type: SQLAlchemy writes the wall-clock fields and drops the offset, so
    values are converted to UTC before they are written and marked UTC when they are read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps only aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

entries_table = Table(
    "entries",
    metadata,
    Column("event_id", String(80), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("site_id", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("boot_id", String(64), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("clock_synced", Boolean, nullable=False),
    # Closed sets are kept as plain strings, not SQL enums: a new reason needs no migration.
    Column("direction", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("credential_type", String(16), nullable=False),
    Column("subject_id", String(200), nullable=False),
    Column("subject_name", String(200), nullable=False),
    Column("code_sha256", String(64), nullable=False),
    Column("code_length", Integer, nullable=False),
    Column("code_text", Text, nullable=True),
    Column("code_text_withheld", Boolean, nullable=False, default=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_entries_device_boot_seq", "device_id", "boot_id", "seq"),
    Index("ix_entries_ts", "ts"),
    Index("ix_entries_subject_id", "subject_id"),
)

devices_table = Table(
    "devices",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("state", String(16), nullable=True),  # online / offline; None until a status arrives
    Column("status_ts", UtcDateTime, nullable=True),  # the device's own time on its status
    Column("status_received_at", UtcDateTime, nullable=True),
    Column("version", String(200), nullable=False, default=""),
    Column("boot_id", String(64), nullable=False, default=""),
    Column("faults", JSON, nullable=False, default=list),
    Column("last_seen", UtcDateTime, nullable=True),
    Column("telemetry", JSON, nullable=True),
    Column("telemetry_at", UtcDateTime, nullable=True),
)

dead_letters_table = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("topic", Text, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
    # A resend of the same refused message (same topic, payload and reason) adds no row: it is
    # counted here. A gate resends what it is not acked, so without this one refused event
    # would add a row every `resend_after` seconds. Rows from before the column have no digest.
    Column("payload_sha256", String(64), nullable=True),
    Column("repeats", Integer, nullable=False, default=0),
    Column("last_received_at", UtcDateTime, nullable=True),  # the latest repeat's
    Index("ix_dead_letters_received_at", "received_at"),
    Index("ix_dead_letters_payload_sha256", "payload_sha256"),
)

# Columns added to a shipped table: (table, column, its SQL definition for ALTER TABLE ADD).
_ADDED_COLUMNS = (
    ("entries", "code_text_withheld", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("dead_letters", "payload_sha256", "VARCHAR(64)"),
    ("dead_letters", "repeats", "INTEGER NOT NULL DEFAULT 0"),
    ("dead_letters", "last_received_at", "TIMESTAMP WITH TIME ZONE"),
)


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the columns an older database lacks, and the indexes over them; return
    "table.column" for each column added."""
    inspector = inspect(engine)
    added = []
    with engine.begin() as conn:
        for table, column, definition in _ADDED_COLUMNS:
            present = {c["name"] for c in inspector.get_columns(table)}
            if column not in present:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {definition}"))
                added.append(f"{table}.{column}")
        # create_all makes the indexes of new tables only.
        for index in dead_letters_table.indexes:
            index.create(conn, checkfirst=True)
    return added
