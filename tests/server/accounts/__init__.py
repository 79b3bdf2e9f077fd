"""Tests of server/accounts/."""
