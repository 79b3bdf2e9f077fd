"""The gate agent, room by room along the data path: camera/ → frames/ → decode/ → verdict/ →
indicator/ → journal/ → uplink/, with system/ (clock, faults, systemd) beneath them; scanner.py
runs the frame loop and app.py wires a gate (`build_agent`)."""
