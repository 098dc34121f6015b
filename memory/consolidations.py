"""Writes of the consolidation aggregate: one row per job, one row of metrics per optimizer step.

A job is opened `running` with its method, hyper-parameters, knowledge
version and parent checkpoint, logs each step's metrics once (the primary
key (consolidation, step) makes a duplicate an error, which is how the
resume logic is tested), and is closed with the checkpoint it produced.

Mixed into `memory.store.ExperienceStore`.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from memory.db import first_line
from memory.errors import StoreError
from memory.models import Consolidation, ConsolidationStep, utcnow


class ConsolidationRecords:
    """Consolidation jobs and their step metrics."""

    def start_consolidation(
        self,
        *,
        run_id: int | None,
        round_id: int | None,
        method: str,
        hparams: dict,
        knowledge_version_id: int | None,
        parent_checkpoint_id: int | None,
    ) -> int:
        """Open a consolidation job (status `running`); return its id."""
        values = {
            "run_id": run_id, "round_id": round_id, "method": method, "hparams": hparams,
            "knowledge_version_id": knowledge_version_id, "parent_checkpoint_id": parent_checkpoint_id,
        }  # fmt: skip
        try:
            return self.transaction(lambda conn: self.insert_row(conn, Consolidation, **values))
        except IntegrityError as exc:
            raise StoreError(f"cannot record consolidation: {first_line(exc)}") from None

    def log_consolidation_steps(self, consolidation_id: int, rows: list[dict]) -> int:
        """Record the metrics of steps not logged yet (each row has `step`); return how many were new.

        Steps the store already holds are skipped, so a resumed job can hand
        over everything its snapshot remembers without double-logging.
        """

        def do(conn: Connection) -> int:
            logged = set(
                conn.execute(
                    select(ConsolidationStep.step).where(
                        ConsolidationStep.consolidation_id == consolidation_id
                    )
                ).scalars()
            )
            new = [
                {
                    "consolidation_id": consolidation_id, "step": row["step"],
                    "metrics": {k: v for k, v in row.items() if k != "step"},
                }
                for row in rows
                if row["step"] not in logged
            ]  # fmt: skip
            if new:
                conn.execute(insert(ConsolidationStep.__table__), new)
            return len(new)

        try:
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(
                f"cannot log steps of consolidation {consolidation_id}: {first_line(exc)}"
            ) from None

    def finish_consolidation(self, consolidation_id: int, checkpoint_id: int) -> None:
        """Mark a consolidation complete with the checkpoint it produced."""

        def do(conn: Connection) -> int:
            stmt = (
                update(Consolidation)
                .where(Consolidation.id == consolidation_id, Consolidation.status == "running")
                .values(status="complete", checkpoint_id=checkpoint_id, finished_at=utcnow())
            )
            return conn.execute(stmt).rowcount

        if self.transaction(do) != 1:
            raise StoreError(f"cannot finish consolidation {consolidation_id}: unknown or already complete")
