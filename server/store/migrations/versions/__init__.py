"""One revision a file, oldest first by `down_revision`; a revision once shipped is never edited."""
