"""`/metrics`: the server's Prometheus text (issue 16), read at scrape time from the collector's
counters and the database; `families.py` makes the metrics, `routes.py` serves them to a
`metrics` token (or an admin)."""
