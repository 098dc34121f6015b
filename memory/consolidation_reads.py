"""Reads of the consolidation aggregate: a run's consolidation jobs and their loss curves.

Part of the read API `memory.queries`, which re-exports every public name.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from memory.frames import frame
from memory.models import Consolidation, ConsolidationStep, Round
from memory.store import ExperienceStore


def consolidations(store: ExperienceStore, run_id: int) -> pd.DataFrame:
    """A run's consolidation jobs, oldest first: id, round, method, status, knowledge, parent and result."""
    stmt = (
        select(
            Consolidation.id, Round.idx.label("round"), Consolidation.method, Consolidation.status,
            Consolidation.knowledge_version_id, Consolidation.parent_checkpoint_id,
            Consolidation.checkpoint_id,
            Consolidation.started_at, Consolidation.finished_at,
        )
        .outerjoin(Round, Round.id == Consolidation.round_id)
        .where(Consolidation.run_id == run_id)
        .order_by(Consolidation.id)
    )  # fmt: skip
    return frame(store, stmt)


def loss_curves(store: ExperienceStore, run_id: int) -> pd.DataFrame:
    """Every logged consolidation step of a run: consolidation, round, method, step, metrics (a dict)."""
    stmt = (
        select(
            Consolidation.id.label("consolidation"), Round.idx.label("round"), Consolidation.method,
            ConsolidationStep.step, ConsolidationStep.metrics,
        )
        .join(Consolidation, Consolidation.id == ConsolidationStep.consolidation_id)
        .outerjoin(Round, Round.id == Consolidation.round_id)
        .where(Consolidation.run_id == run_id)
        .order_by(Consolidation.id, ConsolidationStep.step)
    )  # fmt: skip
    return frame(store, stmt)
