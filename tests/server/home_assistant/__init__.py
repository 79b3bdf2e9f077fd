"""Tests of server/home_assistant/."""
