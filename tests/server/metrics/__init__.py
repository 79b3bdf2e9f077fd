"""Tests of server/metrics/: /metrics, its protection and what it shows."""
