"""Which release of gatescan this is: sent in every gate's status and telemetry, shown on the
dashboard, and read by the package build (pyproject.toml). Here, on the ground floor, so that every
part may read it."""

__version__ = "0.1.0"
