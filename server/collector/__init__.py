"""The collector: gate events from MQTT, validated (prepare.py), queued to one writer thread
(writer.py), stored and acknowledged a batch at a time (batch.py), over a tuned paho client
(client.py); `Collector` (service.py) wires them; failpoints.py stops it at a step for crash
tests."""
