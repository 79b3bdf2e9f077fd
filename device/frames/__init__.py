"""From the camera to the decoder: the one-slot handoff between the capture and decode threads
(handoff.py), the capture loop (capture.py), the region of interest and decode scale (framing.py),
the still-scene check (scene.py) and what the loop counts (stats.py)."""
