"""A server installation, as `gatescan site init` writes it: the CA and the broker's certificate
(certificates.py), the broker's config, users and ACL (broker_config.py), the folder as a whole
(installation.py), and server.toml (server_config.py)."""
