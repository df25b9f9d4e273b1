"""privacy: find a turn by its Discord message, a guild's turns, and guilds that removed the bot

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.create_index("ix_turns_discord_message_id", ["discord_message_id"])
        batch.create_index("ix_turns_guild_id", ["guild_id"])
    op.create_table(
        "guild_removals",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id"),
    )


def downgrade() -> None:
    op.drop_table("guild_removals")
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_guild_id")
        batch.drop_index("ix_turns_discord_message_id")
