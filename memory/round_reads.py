"""Reads of the round aggregate: a run's rounds and where each stands.

Part of the read API `memory.queries`, which re-exports every public name.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from memory.frames import frame
from memory.models import Round
from memory.store import ExperienceStore


def rounds(store: ExperienceStore, run_id: int) -> pd.DataFrame:
    """A run's rounds, oldest first: id, round (index), status, started_at, finished_at."""
    stmt = (
        select(Round.id, Round.idx.label("round"), Round.status, Round.started_at, Round.finished_at)
        .where(Round.run_id == run_id)
        .order_by(Round.idx)
    )
    return frame(store, stmt)
