"""Alembic's revisions of the store's schema (`versions/`), run by server/store/schema.py when a
`Store` opens a database."""
