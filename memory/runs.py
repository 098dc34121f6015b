"""Writes of the run aggregate: named runs, and the checkpoints (model folders) they produce.

A checkpoint row is a path plus its lineage (parent, run, round, method,
format, bits per weight); the folder itself lives on disk, and the store is
what names it, so deployed agents and Ray workers find weights through here
(docs/architecture.md, "weights travel as folders").

Mixed into `memory.store.ExperienceStore`; the methods use its
`transaction`, `scalar` and `insert_row`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from memory.db import first_line
from memory.errors import StoreError
from memory.models import Checkpoint, Run


class RunRecords:
    """Runs and checkpoints."""

    def create_run(self, name: str, config: dict | None = None) -> int:
        """Create a run named `name` (unique) and return its id."""
        try:
            return self.transaction(lambda conn: self.insert_row(conn, Run, name=name, config=config))
        except IntegrityError:
            raise StoreError(f"a run named {name!r} already exists (use get_run to find it)") from None

    def get_run(self, name: str) -> int | None:
        """The id of the run named `name`, or None."""
        return self.scalar(select(Run.id).where(Run.name == name))

    def ensure_run(self, name: str, config: dict | None = None) -> int:
        """The id of the run named `name`, created (with `config`) if it does not exist yet."""
        found = self.get_run(name)
        if found is not None:
            return found
        try:
            return self.create_run(name, config)
        except StoreError:  # another process created it between the two statements
            return self.get_run(name)

    def register_checkpoint(
        self,
        *,
        path: str,
        parent_id: int | None = None,
        fmt: str = "hf",
        bits_per_weight: float | None = None,
        run_id: int | None = None,
        round_id: int | None = None,
        method: str | None = None,
        meta: dict | None = None,
    ) -> int:
        """Record a checkpoint folder and its lineage; return its id."""
        values = {
            "path": path, "parent_id": parent_id, "fmt": fmt, "bits_per_weight": bits_per_weight,
            "run_id": run_id, "round_id": round_id, "method": method, "meta": meta,
        }  # fmt: skip

        def do(conn: Connection) -> int:
            return self.insert_row(conn, Checkpoint, **values)

        try:
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot record checkpoint: {first_line(exc)}") from None

    def checkpoint_for_path(self, path: str, *, run_id: int | None = None) -> int:
        """The id of the checkpoint first registered at `path`; a new root checkpoint if there is none."""
        stmt = select(Checkpoint.id).where(Checkpoint.path == path).order_by(Checkpoint.id).limit(1)
        found = self.scalar(stmt)
        if found is not None:
            return found
        return self.register_checkpoint(path=path, run_id=run_id, method="base")

    def checkpoint_path(self, checkpoint_id: int) -> str:
        """The folder of checkpoint `checkpoint_id`; StoreError for an unknown id."""
        path = self.scalar(select(Checkpoint.path).where(Checkpoint.id == checkpoint_id))
        if path is None:
            raise StoreError(f"there is no checkpoint {checkpoint_id}")
        return path

    def checkpoint_info(self, checkpoint_id: int) -> dict[str, Any]:
        """One checkpoint row as a dict (path, parent_id, fmt, bits_per_weight, method, ...)."""
        with self.reading() as conn:
            row = conn.execute(select(Checkpoint.__table__).where(Checkpoint.id == checkpoint_id)).first()
        if row is None:
            raise StoreError(f"there is no checkpoint {checkpoint_id}")
        return dict(row._mapping)
