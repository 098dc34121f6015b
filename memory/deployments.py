"""Deployment and episode hand-off between deployed agents and the online loop, through the store only.

Two processes that never share memory coordinate here (DESIGN section 9):

- The loop *deploys* a checkpoint by appending a row to `deployments`; agents
  started with `oel play --follow` read the newest row before each wave of
  episodes and reload when it changed. An append-only log keeps the history
  of what was served when, and needs no row locking.
- In watch mode the loop *claims* the episodes agents wrote since the last
  round: complete episodes of the run with no round yet, played by a
  registered checkpoint, are stamped with the new round's id in one UPDATE
  that only touches rows still unclaimed, so two loops can never count an
  episode twice. Episodes with no checkpoint (the RL trainer's own groups,
  for instance) are never claimed.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, func, insert, select, update

from memory.errors import StoreError
from memory.models import Checkpoint, Deployment, Episode
from memory.store import ExperienceStore


def deploy(store: ExperienceStore, run_id: int, checkpoint_id: int, round_id: int | None = None) -> int:
    """Make `checkpoint_id` the checkpoint run `run_id` serves; return the deployment row's id."""

    def do(conn: Connection) -> int:
        if conn.execute(select(Checkpoint.id).where(Checkpoint.id == checkpoint_id)).scalar() is None:
            raise StoreError(f"cannot deploy checkpoint {checkpoint_id}: no such checkpoint")
        values = {"run_id": run_id, "checkpoint_id": checkpoint_id, "round_id": round_id}
        table = Deployment.__table__
        return conn.execute(insert(table).returning(table.c.id), values).scalar_one()

    return store._write(do)


def deployed_checkpoint(store: ExperienceStore, run_id: int) -> tuple[int, str] | None:
    """(checkpoint id, path) that run `run_id` serves now, or None before its first deployment."""
    stmt = (
        select(Checkpoint.id, Checkpoint.path)
        .join(Deployment, Deployment.checkpoint_id == Checkpoint.id)
        .where(Deployment.run_id == run_id)
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        row = conn.execute(stmt).first()
    return (row.id, row.path) if row else None


def _unclaimed(run_id: int, env_id: str, split: str) -> tuple[ColumnElement[bool], ...]:
    return (
        Episode.run_id == run_id,
        Episode.round_id.is_(None),
        Episode.checkpoint_id.is_not(None),
        Episode.status == "complete",
        Episode.env_id == env_id,
        Episode.split == split,
    )


def count_unclaimed(store: ExperienceStore, run_id: int, env_id: str, split: str = "train") -> int:
    """How many complete episodes of the run wait for a round (the watch trigger's count)."""
    stmt = select(func.count()).select_from(Episode).where(*_unclaimed(run_id, env_id, split))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def claim_episodes(
    store: ExperienceStore, run_id: int, round_id: int, env_id: str, split: str = "train"
) -> list[int]:
    """Stamp every unclaimed complete episode of the run with `round_id`; return the ids claimed now."""

    def do(conn: Connection) -> list[int]:
        stmt = (
            update(Episode)
            .where(*_unclaimed(run_id, env_id, split))
            .values(round_id=round_id)
            .returning(Episode.id)
        )
        return sorted(conn.execute(stmt).scalars())

    return store._write(do)
