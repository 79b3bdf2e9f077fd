"""Tests of server/release/: the release key and signed bundles."""
