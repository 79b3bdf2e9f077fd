"""The gate's surroundings: the wall clock and boot id (clock.py), its faults and link state
(health.py), and systemd's notify protocol (systemd_notify.py)."""
