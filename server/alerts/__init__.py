"""Alerts that reach a person: problems found from the fleet's state, opened and cleared without
storms, delivered by webhook and e-mail (issue 16)."""
