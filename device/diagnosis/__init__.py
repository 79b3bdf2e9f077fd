"""`gatescan doctor`: a gate's checks, one line each with its fix (issue 17)."""
