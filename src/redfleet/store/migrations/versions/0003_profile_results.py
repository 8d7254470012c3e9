"""profiles: conformance history (profile_results)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

The table of ``redfleet validate --db`` (redfleet.store.profiles). Self-contained: it does not import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "profile_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=300), nullable=False),
        sa.Column("profile_name", sa.String(length=200), nullable=False),
        sa.Column("profile_version", sa.String(length=50), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pass", sa.Integer(), nullable=False),
        sa.Column("warn", sa.Integer(), nullable=False),
        sa.Column("fail", sa.Integer(), nullable=False),
        sa.Column("not_tested", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("results", JSON_TYPE, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_results")),
    )
    op.create_index("ix_profile_results_node_profile_at", "profile_results",
                    ["node", "profile_name", "validated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_profile_results_node_profile_at", table_name="profile_results")
    op.drop_table("profile_results")
