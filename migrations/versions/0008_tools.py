"""tools: a channel's tools setting (`/tools`), and the tool calls of an assistant turn

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("tools", sa.Boolean(), nullable=True))
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("tool_calls", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("tool_calls")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("tools")
