"""Reads of the run aggregate: the runs, and each run's checkpoint lineage.

Part of the read API `memory.queries`, which re-exports every public name.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from memory.frames import frame
from memory.models import Checkpoint, Episode, Round, Run
from memory.store import ExperienceStore


def runs(store: ExperienceStore) -> pd.DataFrame:
    """Every run, oldest first: id, name, created_at, and its numbers of rounds and episodes."""
    rounds = select(func.count()).where(Round.run_id == Run.id).correlate(Run).scalar_subquery()
    played = select(func.count()).where(Episode.run_id == Run.id).correlate(Run).scalar_subquery()
    stmt = select(Run.id, Run.name, Run.created_at, rounds.label("rounds"), played.label("episodes"))
    return frame(store, stmt.order_by(Run.id))


def lineage(store: ExperienceStore, run_id: int) -> pd.DataFrame:
    """The run's checkpoints with parent, round, method, format, bits per weight and path, oldest first."""
    stmt = (
        select(
            Checkpoint.id, Checkpoint.parent_id, Round.idx.label("round"), Checkpoint.method, Checkpoint.fmt,
            Checkpoint.bits_per_weight, Checkpoint.path,
        )
        .outerjoin(Round, Round.id == Checkpoint.round_id)
        .where(Checkpoint.run_id == run_id)
        .order_by(Checkpoint.id)
    )  # fmt: skip
    return frame(store, stmt)
