"""The store's read API, in one import: `from memory import queries`, then `queries.steps(store, ...)`.

Every read takes an `ExperienceStore` and builds SQLAlchemy Core SELECTs, so
the same code runs on SQLite and PostgreSQL and user values are always bound
parameters; most return pandas DataFrames. The reads live by aggregate, like
the writes (docs/architecture.md, "The store"):

- `memory.episode_reads`: success rates, episodes, steps, transcripts, seed counts;
- `memory.run_reads`: runs and their checkpoint lineage;
- `memory.round_reads`: a run's rounds;
- `memory.knowledge_reads`: knowledge items, versions, growth, and who used a version;
- `memory.consolidation_reads`: consolidation jobs and their loss curves.

This module re-exports all of them, so callers never need to know which
aggregate a read belongs to, and holds the one read that belongs to none:
`table`, any whole table for export.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from memory.consolidation_reads import consolidations, loss_curves
from memory.episode_reads import (
    GROUP_KEYS,
    PAGE_SORTS,
    episode,
    episode_page,
    episodes,
    seed_counts,
    step_actions,
    steps,
    success_rate,
    transcript,
)
from memory.errors import StoreError
from memory.frames import decode_blobs, frame
from memory.knowledge_reads import (
    item_sources,
    knowledge_growth,
    knowledge_items,
    knowledge_versions,
    version_usage,
)
from memory.models import Base
from memory.round_reads import rounds
from memory.run_reads import lineage, runs
from memory.store import ExperienceStore

__all__ = [
    "GROUP_KEYS",
    "PAGE_SORTS",
    "consolidations",
    "episode",
    "episode_page",
    "episodes",
    "item_sources",
    "knowledge_growth",
    "knowledge_items",
    "knowledge_versions",
    "lineage",
    "loss_curves",
    "rounds",
    "runs",
    "seed_counts",
    "step_actions",
    "steps",
    "success_rate",
    "table",
    "transcript",
    "version_usage",
]


def table(store: ExperienceStore, name: str, limit: int | None = None) -> pd.DataFrame:
    """A whole store table as a DataFrame (for export), token arrays decoded to lists."""
    if name not in Base.metadata.tables:
        raise StoreError(f"no table {name!r}; tables are {', '.join(sorted(Base.metadata.tables))}")
    source = Base.metadata.tables[name]
    stmt = select(source).order_by(*source.primary_key.columns)
    if limit is not None:
        stmt = stmt.limit(limit)
    return decode_blobs(frame(store, stmt))
