"""The gate's MQTT link to the collector: the `Uplink` (link.py) and the in-flight window that says
what to publish or resend (inflight.py)."""
