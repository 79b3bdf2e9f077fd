"""From a code's bytes to what the gate decides and records: the repeat window (debounce.py),
credentials (credentials.py), the policy's verdict (policy.py) and the event draft (events.py)."""
