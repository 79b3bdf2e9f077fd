"""Alerts kept across a restart (table alerts, issue 16), and an e-mail address on each user
(users.email: a manager's route for the alerts of their sites).

Made only where missing: a database made before migrations whose tables came from this
version's create_all (server/store/schema.py) has both already.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "email" not in {c["name"] for c in inspector.get_columns("users")}:
        with op.batch_alter_table("users") as batch:
            batch.add_column(sa.Column("email", sa.String(length=254), nullable=True))
    if not inspector.has_table("alerts"):
        op.create_table(
            "alerts",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("kind", sa.String(length=32), nullable=False),
            sa.Column("site_id", sa.String(length=200), nullable=False),
            sa.Column("device_id", sa.String(length=64), nullable=False),
            sa.Column("for_s", sa.Float(), nullable=False),
            sa.Column("summary_en", sa.Text(), nullable=False),
            sa.Column("summary_vi", sa.Text(), nullable=False),
            sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
            sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("acknowledged_by", sa.String(length=80), nullable=False),
            sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_alerts_cleared_at", "alerts", ["cleared_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_cleared_at", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
