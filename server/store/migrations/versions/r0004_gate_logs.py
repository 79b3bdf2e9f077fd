"""Remote commands and their answers (table gate_commands) and the gates' recent warnings and
errors (table gate_logs), issue 17.

Made only where missing: a database made before migrations whose tables came from this
version's create_all (server/store/schema.py) has both already.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("gate_commands"):
        op.create_table(
            "gate_commands",
            sa.Column("command_id", sa.String(length=64), nullable=False),
            sa.Column("device_id", sa.String(length=64), nullable=False),
            sa.Column("site_id", sa.String(length=200), nullable=False),
            sa.Column("action", sa.String(length=32), nullable=False),
            sa.Column("args", sa.JSON(), nullable=False),
            sa.Column("requested_by", sa.String(length=80), nullable=False),
            sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("detail", sa.Text(), nullable=False),
            sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("lines", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("command_id"),
        )
        op.create_index(
            "ix_gate_commands_device_requested",
            "gate_commands",
            ["device_id", "requested_at"],
            unique=False,
        )
        op.create_index("ix_gate_commands_status", "gate_commands", ["status"], unique=False)
    if not inspector.has_table("gate_logs"):
        op.create_table(
            "gate_logs",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("device_id", sa.String(length=64), nullable=False),
            sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("level", sa.String(length=16), nullable=False),
            sa.Column("logger", sa.String(length=64), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_gate_logs_device_id", "gate_logs", ["device_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gate_logs_device_id", table_name="gate_logs")
    op.drop_table("gate_logs")
    op.drop_index("ix_gate_commands_status", table_name="gate_commands")
    op.drop_index("ix_gate_commands_device_requested", table_name="gate_commands")
    op.drop_table("gate_commands")
