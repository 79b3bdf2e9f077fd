"""Tests of the preview (issue 17)."""
