"""Helpers for the test suites only (what benches and the demo share is in gatescan.testing)."""
