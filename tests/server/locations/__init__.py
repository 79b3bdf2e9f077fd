"""Tests of server/locations/."""
