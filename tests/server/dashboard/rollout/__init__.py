"""Tests of server/dashboard/rollout/."""
