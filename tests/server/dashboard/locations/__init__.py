"""Tests of server/dashboard/locations/."""
