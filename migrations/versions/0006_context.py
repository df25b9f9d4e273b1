"""context: why a reply ended (done_reason), and summary turns (what they fold, and whether a
reply has said so)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("done_reason", sa.String(16), nullable=True))
        batch.add_column(sa.Column("covers_until", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("covered", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("announced", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    op.execute("DELETE FROM turns WHERE role = 'summary'")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("announced")
        batch.drop_column("covered")
        batch.drop_column("covers_until")
        batch.drop_column("done_reason")
