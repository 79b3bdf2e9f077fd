"""The pass holder's page: a phone shows its rotating pass from here, offline once loaded."""
