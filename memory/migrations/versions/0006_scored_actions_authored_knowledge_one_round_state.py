"""Scored actions, prefix-cache accounting, person-written knowledge, and one round state machine.

- `steps.candidates` (JSON, NULL for text-mode steps): the candidate
  distribution a scored step sampled from;
- `episodes.action_mode`: text, scored, or text-fallback (scored was asked
  but the environment listed no commands);
- `episodes.n_prompt_computed`: prompt tokens actually run through the model,
  the rest having come from the prefix cache;
- `episodes.n_valid_actions`: steps whose action was an admissible command;
- `knowledge_items.author`: who wrote a person-authored item;
- round statuses become the phase names (collecting -> collect, ...): a
  round's status is now the phase running, moved only by phase transitions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STATUS = {"collecting": "collect", "extracting": "extract", "consolidating": "consolidate",
           "evaluating": "evaluate"}  # fmt: skip


def _rename_statuses(mapping: dict[str, str]) -> None:
    rounds = sa.table("rounds", sa.column("status", sa.String(20)))
    for old, new in mapping.items():
        op.execute(rounds.update().where(rounds.c.status == old).values(status=new))


def upgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("candidates", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action_mode", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("n_prompt_computed", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("n_valid_actions", sa.Integer(), nullable=True))
    with op.batch_alter_table("knowledge_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author", sa.String(length=200), nullable=True))
    _rename_statuses(_STATUS)


def downgrade() -> None:
    _rename_statuses({new: old for old, new in _STATUS.items()} | {"deploy": "evaluating"})
    with op.batch_alter_table("knowledge_items", schema=None) as batch_op:
        batch_op.drop_column("author")
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.drop_column("n_valid_actions")
        batch_op.drop_column("n_prompt_computed")
        batch_op.drop_column("action_mode")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_column("candidates")
