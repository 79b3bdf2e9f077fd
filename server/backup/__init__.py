"""Backup and restore of a server installation (`gatescan backup DIR`, `gatescan restore DIR`):
a consistent copy of the database, the installation's CA and keys, the broker's dynamic security
state, its password and ACL files and server.toml, with a manifest of SHA-256 sums; restored on a
new machine, every enrolled gate logs in again as it was."""
