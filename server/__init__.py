"""The server side: the MQTT collector, the database store and the entries export.

`collector.Collector` receives gate events over MQTT, `store.Store` commits them (SQLite in WAL
mode by default, PostgreSQL later; the tables are in `tables.py`), and only then does the
collector acknowledge them to the gate. `export.export_entries` writes stored entries as JSON
Lines or CSV. `failpoints.Failpoints` lets the crash tests kill the collector at an exact step;
it is inert unless the GATESCAN_FAILPOINTS environment variable arms it.
"""
