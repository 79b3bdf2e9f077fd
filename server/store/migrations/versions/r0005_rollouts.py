"""Updates from the dashboard (issue 17): the rollouts (table rollouts) and each gate's result
(table rollout_gates), kept by server/dashboard/rollout/.

Made only where missing, as r0004's tables are.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("rollouts"):
        op.create_table(
            "rollouts",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("target_version", sa.String(length=64), nullable=False),
            sa.Column("source", sa.Text(), nullable=False),
            sa.Column("requested_by", sa.String(length=80), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("options", sa.JSON(), nullable=False),
            sa.Column("phase", sa.String(length=16), nullable=False),
            sa.Column("canary_device", sa.String(length=64), nullable=True),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_rollouts_phase", "rollouts", ["phase"], unique=False)
    if not inspector.has_table("rollout_gates"):
        op.create_table(
            "rollout_gates",
            sa.Column("rollout_id", sa.Integer(), nullable=False),
            sa.Column("device_id", sa.String(length=64), nullable=False),
            sa.Column("site_id", sa.String(length=200), nullable=False),
            sa.Column("from_version", sa.String(length=64), nullable=False),
            sa.Column("result", sa.String(length=16), nullable=False),
            sa.Column("detail", sa.Text(), nullable=False),
            sa.Column("command_id", sa.String(length=64), nullable=True),
            sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("rollout_id", "device_id"),
        )


def downgrade() -> None:
    op.drop_table("rollout_gates")
    op.drop_index("ix_rollouts_phase", table_name="rollouts")
    op.drop_table("rollouts")
