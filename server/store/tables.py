"""The collector's database schema: entries, devices, dead letters, accounts, the gate
registry, the site keys and passes, and each site's policy for its gates (SQLAlchemy Core).

The SQL stays portable so PostgreSQL can take over from SQLite when one machine is not enough.
Every timestamp is stored and read as timezone-aware UTC. Columns added after a table first
shipped are added to an existing database by `upgrade_schema`, so an older database file
keeps working (a new column always has a default). A new table (site_keys, passes, site_policy,
site_lists, site_policy_buckets, erased_subjects, account_sites) is made in an older database
by `create_all`, which the store runs before `upgrade_schema`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("gatescan.store")


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
    # Time, then gate: serves time ranges (the dashboard, tracing, exports, the purge) and a gate
    # within one (read from the index alone). Keys grow with time, so each commit adds its keys
    # at the index's end. There is no index that starts with the gate: with N gates it takes
    # each commit's keys at N places, and SQLite writes every page it changes to its log
    # whole, so at 500 gates that one index cost about as much as the rest of the row
    # (docs/benchmarks.md); a gate's entries over all time are a scan of this index instead.
    Index("ix_entries_ts_device", "ts", "device_id"),
    Index("ix_entries_subject_id", "subject_id"),
    # The retention purge's other half (server/store/retention.py: received_at OR a synced ts):
    # without it the hourly purge reads the whole table.
    Index("ix_entries_received_at", "received_at"),
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
    # Where the gate stands, from its status (added within protocol v1; "" until a gate says).
    Column("site_id", String(200), nullable=False, default=""),
    Column("location", String(200), nullable=False, default=""),
    Column("direction", String(16), nullable=False, default=""),
)

dead_letters_table = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("topic", Text, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    # The payload's first 4 KiB (DEAD_LETTER_PAYLOAD_BYTES, below), never the
    # whole of a larger one; with its size and digest below. Rows from before were trimmed to
    # it by upgrade_schema (their digest taken from the whole payload first).
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
    # A resend of the same refused message (same topic, payload and reason) adds no row: it is
    # counted here. A gate resends what it is not acked, so without this one refused event
    # would add a row every `resend_after` seconds. Rows from before the column have no digest.
    Column("payload_sha256", String(64), nullable=True),
    Column("repeats", Integer, nullable=False, default=0),
    Column("last_received_at", UtcDateTime, nullable=True),  # the latest repeat's
    # The event it names (a well-formed event_id in its payload), if any: a gate's refused
    # event, or the stored event a `conflict` differs from. None on rows from before.
    Column("event_id", String(80), nullable=True),
    Index("ix_dead_letters_received_at", "received_at"),
    Index("ix_dead_letters_payload_sha256", "payload_sha256"),
)

# The dashboard's accounts (server/accounts/users.py) and audit log (server/store/audit.py).
# Secrets are kept only as digests: a stolen database file opens no session and runs no API token.
users_table = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    # scrypt$n$r$p$salt$hash (server/accounts/users.py)
    Column("password_hash", Text, nullable=False),
    Column("language", String(8), nullable=True),  # None: the site's default
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("last_login_at", UtcDateTime, nullable=True),  # None: never logged in
    # Where the alerts of the sites they hold are mailed (server/alerts/); None: nowhere.
    Column("email", String(254), nullable=True),
)

api_tokens_table = Table(
    "api_tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
)

# The sites a user or token holds its role on (server/accounts/users.py): none for an account
# means every site (as before sites were named), and an admin holds every site whatever this says.
# A table of its own, not a column: an older database gains it by create_all, nothing to alter.
account_sites_table = Table(
    "account_sites",
    metadata,
    Column("kind", String(8), primary_key=True),  # user / token
    Column("name", String(64), primary_key=True),
    Column("site_id", String(200), primary_key=True),
)

web_sessions_table = Table(
    "web_sessions",
    metadata,
    Column("session_sha256", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Index("ix_web_sessions_user_name", "user_name"),
)

audit_log_table = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(80), nullable=False),  # a user name, "token:NAME" or "system"
    Column("action", String(32), nullable=False),  # unmask, trace, export, search, purge, ...
    Column("subject", String(200), nullable=False, default=""),  # whom it was about
    Column("details", JSON, nullable=False, default=dict),
    # The site it concerns, "" for none or several (revision 0002): a manager's audit view
    # shows their sites' rows; the rest is the admin's.
    Column("site_id", String(200), nullable=False, default="", server_default=""),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_site_id_at", "site_id", "at"),
)

# The gate registry (server/store/gates.py): gates registered with `gatescan gate add`, their
# site, and their enrolment token, kept only as its SHA-256 (a stolen database enrols no gate).
gates_table = Table(
    "gates",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("site_id", String(200), nullable=False),
    Column("location", String(200), nullable=False, default=""),
    Column("direction", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # pending / enrolled / revoked / retired
    # The latest card's token, kept after it is spent (so a replay is told `used`, not
    # `unknown_token`); a new card's replaces it.
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("token_expires_at", UtcDateTime, nullable=False),
    Column("token_spent_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),  # the latest change of state or token
    Column("enrolled_at", UtcDateTime, nullable=True),
    # What the gate said when it enrolled (its text, untrusted: escaped wherever shown).
    Column("hardware", String(200), nullable=False, default=""),
    Column("agent_version", String(200), nullable=False, default=""),
    Column("enrolments", Integer, nullable=False, default=0),  # cards enrolled for this id
)

# A site's pass-signing keys (server/store/site_keys.py). The private key is kept raw, as the
# 32 bytes of an Ed25519 seed: the database file is 0600 and holds everything else a site has;
# it is never printed or logged. key_id is what a pass names (1..65535, unique per installation).
site_keys_table = Table(
    "site_keys",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=False),
    Column("site_id", String(200), nullable=False),
    Column("state", String(16), nullable=False),  # active / verify-only / retired
    Column("public_key", LargeBinary, nullable=False),  # 32 bytes, raw
    Column("private_key", LargeBinary, nullable=False),  # 32 bytes, raw: never shown
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
    Index("ix_site_keys_site_id", "site_id"),
)

# Passes a site issued (server/store/site_keys.py): the registry maps a pass id to its holder.
passes_table = Table(
    "passes",
    metadata,
    Column("pass_id", String(16), primary_key=True),  # 16 hex digits
    Column("holder_name", String(200), nullable=False),  # NFC, as given
    Column("site_id", String(200), nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("valid_from", UtcDateTime, nullable=False),
    Column("valid_until", UtcDateTime, nullable=False),
    Column("issued", Boolean, nullable=False, default=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),  # None: not revoked
    Index("ix_passes_site_id", "site_id"),
)

# Each site's policy as its gates get it (server/store/site_policy.py): its version, grown by one
# in the same transaction as every change of the site's keys, revoked passes or lists; the key
# its list entries are hashed under (made when first needed, never changed); and what the
# collector's publisher last published (the version and a digest of its content), so a change
# with no version of its own (a revocation past its pass's end) gets one.
site_policy_table = Table(
    "site_policy",
    metadata,
    Column("site_id", String(200), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("list_key", LargeBinary, nullable=False),  # 32 random bytes: never shown
    Column("changed_at", UtcDateTime, nullable=False),
    Column("published_version", BigInteger, nullable=True),  # None: never published
    Column("published_digest", String(64), nullable=True),
    # Rotating passes: the secret gates derive each pass's from (32 random bytes, never shown).
    Column("rotation_secret", LargeBinary, nullable=True),
    # Presence: anti-passback off / soft / hard, and the most people inside (None: no limit).
    Column("anti_passback", String(8), nullable=False, default="off"),
    Column("capacity", Integer, nullable=True),
)

# A site's allow and block lists (`gatescan list add|remove`): each subject as
# protocol.site_policy.list_subject writes it ("cccd:<12 digits>" or "pass:<16 hex>").
site_lists_table = Table(
    "site_lists",
    metadata,
    Column("site_id", String(200), primary_key=True),
    Column("kind", String(16), primary_key=True),  # allow / block
    Column("subject", String(40), primary_key=True),
    Column("added_at", UtcDateTime, nullable=False),
)

# The list buckets the publisher last published per site (a retained message each on the
# broker): kept so that an unchanged bucket is not sent again, a bucket emptied while the
# server was down is still cleared, and a bucket keeps the version it last changed at.
site_policy_buckets_table = Table(
    "site_policy_buckets",
    metadata,
    Column("site_id", String(200), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("digest", String(16), nullable=False),
    Column("version", BigInteger, nullable=False),
)

# The people whose data `gatescan person erase` erased (server/store/person_data.py): only the
# SHA-256 of their subject_id (a CCCD number or a pass id), never the ID, and when. The collector
# stores no event naming one of them again (server/store/writes.py): a gate that still holds
# one resends it until it is acked.
erased_subjects_table = Table(
    "erased_subjects",
    metadata,
    Column("subject_sha256", String(64), primary_key=True),
    Column("erased_at", UtcDateTime, nullable=False),
)

# The alerts (server/alerts/tracker.py's state, server/store/alerts.py): one row per problem
# from when it is first seen until it clears (cleared_at) or goes before it lasted (deleted);
# a cleared row stays for the dashboard's "recently cleared". `opened_at` None: not yet told.
alerts_table = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),  # Problem.key: "offline:gate-hq-01"
    Column("kind", String(32), nullable=False),
    Column("site_id", String(200), nullable=False),  # "" for the installation's own
    Column("device_id", String(64), nullable=False),
    Column("for_s", Float, nullable=False),
    Column("summary_en", Text, nullable=False),
    Column("summary_vi", Text, nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("opened_at", UtcDateTime, nullable=True),
    Column("cleared_at", UtcDateTime, nullable=True),
    Column("acknowledged_by", String(80), nullable=False),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Index("ix_alerts_cleared_at", "cleared_at"),
)

# Remote commands (issue 17, server/store/gate_commands.py): one row per command a person asked
# for, from `pending` (the dashboard or `gatescan gate command` wrote it) through `sent` (a
# collector published it) to the gate's answer (accepted, done, refused, failed) or `unsent`.
gate_commands_table = Table(
    "gate_commands",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("site_id", String(200), nullable=False),
    Column("action", String(32), nullable=False),
    Column("args", JSON, nullable=False),
    Column("requested_by", String(80), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("lines", JSON, nullable=False),  # send_logs' answer: LogLine dicts
    Index("ix_gate_commands_device_requested", "device_id", "requested_at"),
    Index("ix_gate_commands_status", "status"),
)

# A gate's warnings and errors from its `logs` topic (redacted at the gate, validated and capped
# at the collector): the newest GATE_LOG_LINES_KEPT per gate are kept.
gate_logs_table = Table(
    "gate_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False),
    Column("ts", UtcDateTime, nullable=False),  # the gate's clock
    Column("received_at", UtcDateTime, nullable=False),
    Column("level", String(16), nullable=False),
    Column("logger", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_gate_logs_device_id", "device_id", "id"),
)

# Updates from the dashboard (issue 17; server/dashboard/rollout/): one row per rollout, one
# per gate of it with that gate's result. `phase`: canary (the canary's result awaited), rest
# (the others sent), done.
rollouts_table = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target_version", String(64), nullable=False),
    Column("source", Text, nullable=False),  # the bundle's URL as the gates are told it
    Column("requested_by", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("options", JSON, nullable=False),  # only_outdated, skip_offline, canary, timeout_s
    Column("phase", String(16), nullable=False),
    Column("canary_device", String(64), nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Index("ix_rollouts_phase", "phase"),
)

rollout_gates_table = Table(
    "rollout_gates",
    metadata,
    Column("rollout_id", Integer, primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("site_id", String(200), nullable=False),
    Column("from_version", String(64), nullable=False),
    # skipped, waiting (behind the canary), sent, updated, update_failed, no_answer, not_sent
    Column("result", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("command_id", String(64), nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
)

# Self check-in locations (issue 18; server/locations/): a place with a poster. `key` (hex, 32
# random bytes) signs the poster's token; `enabled` false refuses its check-ins.
locations_table = Table(
    "locations",
    metadata,
    Column("location_id", String(64), primary_key=True),
    Column("site_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("key", String(64), nullable=False),
    Index("ix_locations_site", "site_id"),
)

# Indexes a shipped version made and this one does not: dropped when a database is opened.
_DROPPED_INDEXES = (
    ("entries", "ix_entries_device_boot_seq"),  # gate first: see ix_entries_ts_device
    ("entries", "ix_entries_ts"),  # ix_entries_ts_device starts with ts
)

# Columns added to a shipped table: (table, column, its SQL definition for ALTER TABLE ADD).
_ADDED_COLUMNS = (
    ("entries", "code_text_withheld", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("dead_letters", "payload_sha256", "VARCHAR(64)"),
    ("dead_letters", "repeats", "INTEGER NOT NULL DEFAULT 0"),
    ("dead_letters", "last_received_at", "TIMESTAMP WITH TIME ZONE"),
    ("dead_letters", "event_id", "VARCHAR(80)"),
    ("devices", "site_id", "VARCHAR(200) NOT NULL DEFAULT ''"),
    ("devices", "location", "VARCHAR(200) NOT NULL DEFAULT ''"),
    ("devices", "direction", "VARCHAR(16) NOT NULL DEFAULT ''"),
    ("users", "last_login_at", "TIMESTAMP WITH TIME ZONE"),
    ("site_policy", "rotation_secret", "BYTEA"),
    ("site_policy", "anti_passback", "VARCHAR(8) NOT NULL DEFAULT 'off'"),
    ("site_policy", "capacity", "INTEGER"),
)


# Frozen with the first revision (server/store/migrations/): a column, index or table added
# from now on is a new revision, never a line here or in _DROPPED_INDEXES.
def upgrade_schema(conn: Connection) -> list[str]:
    """Bring a database made before migrations up to the first revision's schema (server/store/
    schema.py runs this once, in its transaction): add the columns and indexes it lacks, drop
    the indexes this version no longer keeps. Return "table.column" for each column added (each
    index created or dropped is logged)."""
    inspector = inspect(conn)
    added = []
    for table, column, definition in _ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table)}
        if column not in present:
            if conn.dialect.name == "sqlite":  # SQLite's name for PostgreSQL's BYTEA
                definition = definition.replace("BYTEA", "BLOB")
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {definition}"))
            added.append(f"{table}.{column}")
    # create_all makes the indexes of new tables only. Building one over a large entries
    # table takes a while (once), so it is logged.
    for indexed in (entries_table, dead_letters_table):
        have = {i["name"] for i in inspector.get_indexes(indexed.name)}
        for index in sorted(indexed.indexes, key=lambda i: str(i.name)):
            if index.name not in have:
                log.info("database upgrade: creating index %s", index.name)
                index.create(conn, checkfirst=True)
    for table, name in _DROPPED_INDEXES:
        if name in {i["name"] for i in inspector.get_indexes(table)}:
            log.info("database upgrade: dropping index %s", name)
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))  # another process may drop it too
    trimmed = trim_dead_letter_payloads(conn)
    if trimmed:
        log.info("database upgrade: %d dead letters' payloads cut to 4 KiB", trimmed)
    return added


# A dead letter keeps at most this much of the payload, with the whole payload's SHA-256 and
# length: enough to see what it was and to recognise it again, never a whole 64 KiB of names
# and ID numbers (one hostile gate once grew a database by 19 MB in 3 s with refused messages).
DEAD_LETTER_PAYLOAD_BYTES = 4 * 1024
_TRIM_CHUNK = 500


def trim_dead_letter_payloads(conn: Connection) -> int:
    """Cut the payloads of dead letters stored whole by an older version to their first
    DEAD_LETTER_PAYLOAD_BYTES, first taking the whole payload's SHA-256 where the row has none (so
    a resend still counts as a repeat). Returns how many rows were cut; none on the next run."""
    table = dead_letters_table
    longer = func.length(table.c.payload) > DEAD_LETTER_PAYLOAD_BYTES
    trimmed = 0
    while True:
        rows = conn.execute(
            select(table.c.id, table.c.payload, table.c.payload_sha256)
            .where(longer)
            .limit(_TRIM_CHUNK)
        ).all()
        for row_id, payload, digest in rows:
            values = {
                "payload": bytes(payload[:DEAD_LETTER_PAYLOAD_BYTES]),
                "payload_sha256": digest or hashlib.sha256(payload).hexdigest(),
            }
            conn.execute(update(table).where(table.c.id == row_id).values(values))
        trimmed += len(rows)
        if len(rows) < _TRIM_CHUNK:
            return trimmed
