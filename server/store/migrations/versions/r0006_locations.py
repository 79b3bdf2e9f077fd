"""Self check-in locations (issue 18): table locations, kept by server/locations/.

Made only where missing, as r0004's tables are.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("locations"):
        op.create_table(
            "locations",
            sa.Column("location_id", sa.String(length=64), nullable=False),
            sa.Column("site_id", sa.String(length=200), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("direction", sa.String(length=8), nullable=False),
            sa.Column("enabled", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("location_id"),
        )
        op.create_index("ix_locations_site", "locations", ["site_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_locations_site", table_name="locations")
    op.drop_table("locations")
