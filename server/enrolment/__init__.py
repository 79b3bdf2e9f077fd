"""The enrolment service: a gate in setup mode exchanges its card's token for its broker login
(protocol/enrolment.py is the contract)."""
