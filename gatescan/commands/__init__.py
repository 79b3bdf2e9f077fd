"""One module per `gatescan` command: agent, collector, server and web, user and token, decode,
entries, journal, demo."""
