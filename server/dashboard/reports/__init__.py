"""What the dashboard and the API show: fleet status, entries, contact tracing, occupancy.

Each report reads the store's tables through its engine and returns typed values (pydantic
models, so the API serialises them as they are). Personal data leaves here masked (masking.py)
unless the asking account's role allows otherwise (access.py), and every look at a person is
written to the audit log.
"""
