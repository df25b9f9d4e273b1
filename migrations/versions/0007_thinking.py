"""thinking: a reply's reasoning, a channel's and a persona's thinking level

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("reasoning", sa.Text(), nullable=True))
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("think", sa.String(length=16), nullable=True))
    with op.batch_alter_table("personas") as batch:
        batch.add_column(sa.Column("think", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("personas") as batch:
        batch.drop_column("think")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("think")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("reasoning")
