"""Tests of server/site/: the installation site init writes, and server.toml."""
