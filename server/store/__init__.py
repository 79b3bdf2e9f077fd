"""The database: `Store` (database.py) with its reads, the batch writes (writes.py), the tables
(tables.py), the entries export (entry_export.py), the audit log (audit.py) and the purge of old
entries (retention.py)."""
