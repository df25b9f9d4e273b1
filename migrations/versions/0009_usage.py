"""usage: tokens and time per guild, member, model and day; a persona's keep_alive

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "guild_id", "user_id", "model"),
    )
    op.create_index("ix_usage_guild_id_day", "usage", ["guild_id", "day"])
    op.create_index("ix_usage_user_id_day", "usage", ["user_id", "day"])
    with op.batch_alter_table("personas") as batch:
        batch.add_column(sa.Column("keep_alive", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("personas") as batch:
        batch.drop_column("keep_alive")
    op.drop_index("ix_usage_user_id_day", table_name="usage")
    op.drop_index("ix_usage_guild_id_day", table_name="usage")
    op.drop_table("usage")
