"""gatescan: entry-gate QR scanner. The `gatescan` command lives in gatescan.cli."""

__version__ = "0.1.0"
