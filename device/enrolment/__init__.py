"""How a gate in setup mode becomes a gate of a site: the HTTPS exchange of an enrolment code for
an identity (`client.py`) and the identity kept in the data directory (`identity.py`)."""
