"""Who may use the dashboard and the API: users, roles, tokens and sessions (users.py) and the
password hashing (passwords.py)."""
