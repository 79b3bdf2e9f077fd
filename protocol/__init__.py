"""The wire contract between gates and the collector (version v1).

Everything that crosses MQTT is defined here once: topic names, the JSON messages, the closed
set of verdicts, and the broker URL both sides are configured with. Device and server both import
this package; neither defines its own copy. Readers ignore unknown fields, so a newer gate can
talk to an older collector.
"""
