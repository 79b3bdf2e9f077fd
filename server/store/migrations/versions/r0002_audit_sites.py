"""The audit log names the site a row concerns ("" for none, or several): a manager's audit view
shows their own sites' rows (issue 16).

The column is added only where it is missing: a database made before migrations whose audit_log
was created by this version's create_all (server/store/schema.py) has it already.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "site_id" not in {c["name"] for c in inspector.get_columns("audit_log")}:
        with op.batch_alter_table("audit_log") as batch:
            batch.add_column(
                sa.Column("site_id", sa.String(length=200), nullable=False, server_default="")
            )
    if "ix_audit_log_site_id_at" not in {i["name"] for i in inspector.get_indexes("audit_log")}:
        op.create_index("ix_audit_log_site_id_at", "audit_log", ["site_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_log_site_id_at", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("site_id")
