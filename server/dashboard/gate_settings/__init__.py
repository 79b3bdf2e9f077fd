"""The settings a manager or technician pushes to a gate from its page (issue 17)."""
