"""The gate's journal, its source of truth on its own disk: the `Journal` (journal.py) over the
outbox (outbox.py) and the daily history (history.py), TinyDB on append-only logs (storage.py,
line_format.py, durable_files.py), and the recorder that holds scans while the disk refuses them
(recorder.py)."""
