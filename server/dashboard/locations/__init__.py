"""The self check-in locations' page on the dashboard (issue 18): list, add, disable, posters."""
