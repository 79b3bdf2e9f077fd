"""Self check-in locations (issue 18): places people check in at with their phone, by a poster."""
