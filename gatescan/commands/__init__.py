"""One module per `gatescan` command: agent, collector, server and web, site, provision, user and
token, decode, entries, journal, demo."""
