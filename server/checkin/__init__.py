"""The public self check-in page a location's poster opens (issue 18): `/c/{token}`."""
