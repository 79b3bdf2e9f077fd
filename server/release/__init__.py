"""Signed releases made on the server (issue 17): the release key and the bundle."""
