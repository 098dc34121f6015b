"""Writes of the round aggregate: rounds, their phase jobs, deployments, and watch-mode claims.

One state machine. A round's `status` is `pending`, then the name of the
phase running now, then `done`; or `failed`. Only phase transitions move it,
in the same transaction as the phase row:

    pending -> collect -> extract -> consolidate -> evaluate -> deploy -> done
                 (forward only; a phase may be skipped; any phase -> failed;
                  failed or a crashed phase -> that phase again)

`begin_phase` starts (or, after a failure or a kill -9, restarts) a phase job
keyed by (round, phase) and sets the round's status to it;
`complete_phase` keeps the phase's result (JSON) for resumption and reports;
`fail_phase` records the error and fails the round; `finish_round` closes it.
A phase that is complete cannot be begun again, so a resumed loop skips it.

Deployments and claims coordinate processes that never share memory
(docs/architecture.md, "the store is the queue"):

- the loop deploys a checkpoint by appending a row to `deployments`; deployed
  agents (`oel play --follow`, Ray workers) read the newest row before each
  wave of episodes and reload when it changed;
- in watch mode the loop claims the episodes agents wrote since the last
  round: complete episodes of the run with no round yet, played by a
  registered checkpoint, are stamped with the round's id in one UPDATE that
  only touches rows still unclaimed, so two loops never count an episode
  twice. Episodes with no checkpoint (an RL trainer's own groups) are never
  claimed.

Mixed into `memory.store.ExperienceStore`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from memory.errors import StoreError
from memory.models import Checkpoint, Deployment, Episode, Phase, Round, utcnow

PHASES = ("collect", "extract", "consolidate", "evaluate", "deploy")
"""A round's phases, in order."""


def _check_begin(status: str, phase: str) -> None:
    """Raise unless a round in `status` may begin `phase` (forward, skips allowed, restart after failure)."""
    if status == "done":
        raise StoreError(f"the round is done; phase {phase!r} cannot run again")
    if status in ("pending", "failed"):
        return
    if PHASES.index(phase) < PHASES.index(status):
        raise StoreError(f"illegal round transition {status} -> {phase}: phases only move forward")


def _unclaimed(run_id: int, env_id: str, split: str) -> tuple[ColumnElement[bool], ...]:
    return (
        Episode.run_id == run_id,
        Episode.round_id.is_(None),
        Episode.checkpoint_id.is_not(None),
        Episode.status == "complete",
        Episode.env_id == env_id,
        Episode.split == split,
    )


class RoundRecords:
    """Rounds, phases, deployments and claims."""

    def start_round(self, run_id: int, index: int) -> int:
        """The id of round `index` of run `run_id`, created `pending` if new (idempotent)."""
        find = select(Round.id).where(Round.run_id == run_id, Round.idx == index)

        def do(conn: Connection) -> int:
            existing = conn.execute(find).scalar_one_or_none()
            if existing is not None:
                return existing
            return self.insert_row(conn, Round, run_id=run_id, idx=index)

        try:
            return self.transaction(do)
        except IntegrityError:  # a concurrent writer created it first, or the run does not exist
            found = self.scalar(find)
            if found is None:
                raise StoreError(f"cannot start round {index}: no run with id {run_id}") from None
            return found

    def round_status(self, round_id: int) -> str:
        """The round's status (see the module docstring)."""
        status = self.scalar(select(Round.status).where(Round.id == round_id))
        if status is None:
            raise StoreError(f"no round with id {round_id}")
        return status

    def round_finished_at(self, run_id: int, index: int) -> float | None:
        """When round `index` of the run was finished (POSIX seconds), or None."""
        ended = self.scalar(select(Round.finished_at).where(Round.run_id == run_id, Round.idx == index))
        return ended.timestamp() if ended is not None else None

    def begin_phase(self, round_id: int, phase: str) -> int:
        """Start (or restart after a failure or crash) phase `phase` of a round; return the phase job's id.

        The round's status becomes `phase`. Raises StoreError when that phase
        is already complete or the move would go backwards.
        """
        if phase not in PHASES:
            raise StoreError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")

        def do(conn: Connection) -> int:
            round_row = conn.execute(
                select(Round.run_id, Round.status).where(Round.id == round_id).with_for_update()
            ).first()
            if round_row is None:
                raise StoreError(f"no round with id {round_id}")
            row = conn.execute(
                select(Phase.id, Phase.status).where(Phase.round_id == round_id, Phase.phase == phase)
            ).first()
            _check_begin(round_row.status, phase)
            if row is not None and row.status == "complete":
                raise StoreError(f"phase {phase!r} of round {round_id} is already complete")
            now = utcnow()
            values: dict[str, Any] = {"status": phase, "updated_at": now}
            if round_row.status == "pending":
                values["started_at"] = now
            conn.execute(update(Round).where(Round.id == round_id).values(**values))
            if row is None:
                return self.insert_row(conn, Phase, run_id=round_row.run_id, round_id=round_id, phase=phase)
            conn.execute(
                update(Phase)
                .where(Phase.id == row.id)
                .values(status="running", attempts=Phase.attempts + 1, error=None, started_at=now)
            )
            return row.id

        return self.transaction(do)

    def complete_phase(self, phase_id: int, result: dict | None = None) -> None:
        """Mark a phase job complete, keeping what it produced (JSON) for resumption and reports."""
        self._finish_phase(phase_id, "complete", None, result)

    def fail_phase(self, phase_id: int, error: str) -> None:
        """Mark a phase job failed with a message, and its round failed; `begin_phase` may restart it."""
        self._finish_phase(phase_id, "failed", error, None)

    def _finish_phase(self, phase_id: int, status: str, error: str | None, result: dict | None) -> None:
        def do(conn: Connection) -> int:
            now = utcnow()
            stmt = (
                update(Phase)
                .where(Phase.id == phase_id, Phase.status == "running")
                .values(status=status, error=error, result=result, finished_at=now)
                .returning(Phase.round_id)
            )
            round_id = conn.execute(stmt).scalar()
            if round_id is None:
                return 0
            if status == "failed":
                conn.execute(
                    update(Round).where(Round.id == round_id).values(status="failed", updated_at=now)
                )
            return 1

        if self.transaction(do) != 1:
            raise StoreError(f"cannot mark phase {phase_id} {status}: it is unknown or not running")

    def finish_round(self, round_id: int) -> None:
        """Close a round whose phases ran: its status becomes `done`."""

        def do(conn: Connection) -> None:
            status = conn.execute(select(Round.status).where(Round.id == round_id).with_for_update()).scalar()
            if status is None:
                raise StoreError(f"no round with id {round_id}")
            if status in ("pending", "failed"):
                raise StoreError(f"round {round_id} is {status}; only a round whose phases ran can be done")
            now = utcnow()
            conn.execute(
                update(Round)
                .where(Round.id == round_id)
                .values(status="done", updated_at=now, finished_at=now)
            )

        self.transaction(do)

    def phase_results(self, round_id: int) -> dict[str, dict]:
        """Phase name -> the result it recorded, for a round's complete phases."""
        stmt = select(Phase.phase, Phase.result).where(Phase.round_id == round_id, Phase.status == "complete")
        with self.reading() as conn:
            return {row.phase: dict(row.result or {}) for row in conn.execute(stmt)}

    # ------------------------------------------------------------------ deployments and claims

    def deploy(self, run_id: int, checkpoint_id: int, round_id: int | None = None) -> int:
        """Make `checkpoint_id` the checkpoint run `run_id` serves; return the deployment row's id."""

        def do(conn: Connection) -> int:
            if conn.execute(select(Checkpoint.id).where(Checkpoint.id == checkpoint_id)).scalar() is None:
                raise StoreError(f"cannot deploy checkpoint {checkpoint_id}: no such checkpoint")
            return self.insert_row(
                conn, Deployment, run_id=run_id, checkpoint_id=checkpoint_id, round_id=round_id
            )

        return self.transaction(do)

    def deployed_checkpoint(self, run_id: int) -> tuple[int, str] | None:
        """(checkpoint id, path) that run `run_id` serves now, or None before its first deployment."""
        stmt = (
            select(Checkpoint.id, Checkpoint.path)
            .join(Deployment, Deployment.checkpoint_id == Checkpoint.id)
            .where(Deployment.run_id == run_id)
            .order_by(Deployment.id.desc())
            .limit(1)
        )
        with self.reading() as conn:
            row = conn.execute(stmt).first()
        return (row.id, row.path) if row else None

    def count_unclaimed(self, run_id: int, env_id: str, split: str = "train") -> int:
        """How many complete episodes of the run wait for a round (the watch trigger's count)."""
        return int(
            self.scalar(select(func.count()).select_from(Episode).where(*_unclaimed(run_id, env_id, split)))
        )

    def claim_episodes(self, run_id: int, round_id: int, env_id: str, split: str = "train") -> list[int]:
        """Stamp every unclaimed complete episode of the run with `round_id`; return the ids claimed now."""

        def do(conn: Connection) -> list[int]:
            stmt = (
                update(Episode)
                .where(*_unclaimed(run_id, env_id, split))
                .values(round_id=round_id)
                .returning(Episode.id)
            )
            return sorted(conn.execute(stmt).scalars())

        return self.transaction(do)
