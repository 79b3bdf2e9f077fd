"""What the person at the gate sees and hears: the `Indicator` protocol (base.py), the light and
sound patterns (patterns.py), GPIO outputs (gpio.py) and the demo's terminal (terminal.py)."""
