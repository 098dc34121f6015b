"""Reads of the knowledge aggregate: items with their provenance, versions, growth, and who used a version.

Part of the read API `memory.queries`, which re-exports every public name.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Select, case, func, select

from memory.frames import frame
from memory.models import (
    Consolidation,
    Episode,
    KnowledgeItem,
    KnowledgeItemSource,
    KnowledgeVersion,
    KnowledgeVersionItem,
    Round,
    Run,
)
from memory.store import ExperienceStore


def item_sources(store: ExperienceStore, item_id: int) -> list[int]:
    """The episodes a knowledge item was extracted from (provenance), oldest first."""
    stmt = select(KnowledgeItemSource.episode_id).where(KnowledgeItemSource.item_id == item_id)
    with store.reading() as conn:
        return sorted(conn.execute(stmt).scalars())


def version_usage(store: ExperienceStore, version_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Who used a knowledge version: episodes per (split, checkpoint), and the consolidations of it."""
    episodes_by = select(
        Episode.split, Episode.checkpoint_id.label("checkpoint"), func.count().label("episodes"),
        func.sum(case((Episode.won, 1), else_=0)).label("wins"),
    ).where(Episode.knowledge_version_id == version_id, Episode.status == "complete")  # fmt: skip
    jobs = select(
        Consolidation.id, Consolidation.method, Consolidation.status, Consolidation.checkpoint_id,
        Consolidation.parent_checkpoint_id,
    ).where(Consolidation.knowledge_version_id == version_id)  # fmt: skip
    return (
        frame(store, episodes_by.group_by(Episode.split, Episode.checkpoint_id)),
        frame(store, jobs.order_by(Consolidation.id)),
    )


def knowledge_growth(store: ExperienceStore, run_id: int | None = None) -> pd.DataFrame:
    """Per run and round: items added, items so far, and the round's last knowledge version's size.

    Columns: run, round, items_added, items_total, version_id,
    version_items, version_tokens. Rounds without knowledge appear with 0
    items added, so a plateau is visible.
    """

    def by_run(stmt: Select, column: Any) -> Select:
        return stmt if run_id is None else stmt.where(column == run_id)

    rounds = frame(
        store,
        by_run(select(Round.run_id, Round.id.label("round_id"), Round.idx.label("round")), Round.run_id),
    )
    items = frame(
        store,
        by_run(
            select(KnowledgeItem.run_id, KnowledgeItem.round_id, func.count().label("items_added")).group_by(
                KnowledgeItem.run_id, KnowledgeItem.round_id
            ),
            KnowledgeItem.run_id,
        ),
    )
    versions = frame(
        store,
        by_run(
            select(
                KnowledgeVersion.run_id,
                KnowledgeVersion.round_id,
                KnowledgeVersion.id.label("version_id"),
                KnowledgeVersion.n_items.label("version_items"),
                KnowledgeVersion.n_tokens.label("version_tokens"),
            ).order_by(KnowledgeVersion.id),
            KnowledgeVersion.run_id,
        ),
    ).drop_duplicates(["run_id", "round_id"], keep="last")
    keys = ["run_id", "round_id"]
    df = rounds.merge(items, on=keys, how="outer").merge(versions, on=keys, how="outer")
    df["items_added"] = df["items_added"].fillna(0).astype(int)
    df = df.sort_values(["run_id", "round"], na_position="first", kind="stable")
    df["items_total"] = df.groupby("run_id")["items_added"].cumsum()
    names = dict(frame(store, select(Run.id, Run.name)).itertuples(index=False))
    df["run"] = df["run_id"].map(names)
    columns = ["run", "round", "items_added", "items_total", "version_id", "version_items", "version_tokens"]
    nullable = {c: "Int64" for c in ("round", "version_id", "version_items", "version_tokens")}
    return df[columns].astype(nullable).reset_index(drop=True)


def knowledge_items(
    store: ExperienceStore, run_id: int, *, active_only: bool = True, version_id: int | None = None
) -> pd.DataFrame:
    """A run's knowledge items, oldest first, with votes and provenance counts.

    Columns: id, text, votes, active, round, prompt_version,
    extractor_checkpoint, author (person-written items), n_sources (episodes linked as sources), and,
    when `version_id` is given, only that version's items with their
    `position` in it (ordered by position).
    """
    n_sources = (
        select(func.count())
        .where(KnowledgeItemSource.item_id == KnowledgeItem.id)
        .correlate(KnowledgeItem)
        .scalar_subquery()
    )
    columns = [
        KnowledgeItem.id, KnowledgeItem.text, KnowledgeItem.votes, KnowledgeItem.active,
        Round.idx.label("round"), KnowledgeItem.prompt_version,
        KnowledgeItem.extractor_checkpoint_id.label("extractor_checkpoint"), KnowledgeItem.author,
        n_sources.label("n_sources"),
    ]  # fmt: skip
    source = KnowledgeItem.__table__.outerjoin(Round.__table__, Round.id == KnowledgeItem.round_id)
    if version_id is not None:
        columns.append(KnowledgeVersionItem.position)
        source = source.join(
            KnowledgeVersionItem.__table__,
            (KnowledgeVersionItem.item_id == KnowledgeItem.id)
            & (KnowledgeVersionItem.version_id == version_id),
        )
    stmt = select(*columns).select_from(source).where(KnowledgeItem.run_id == run_id)
    if active_only:
        stmt = stmt.where(KnowledgeItem.active)
    order = KnowledgeVersionItem.position if version_id is not None else KnowledgeItem.id
    return frame(store, stmt.order_by(order))


def knowledge_versions(store: ExperienceStore, run_id: int | None = None) -> pd.DataFrame:
    """Knowledge versions, oldest first: id, run, round, kind, n_items, n_tokens, created_at, meta."""
    version = KnowledgeVersion
    stmt = select(
        version.id, Run.name.label("run"), Round.idx.label("round"), version.kind, version.n_items,
        version.n_tokens, version.created_at, version.meta,
    ).select_from(
        KnowledgeVersion.__table__.join(Run.__table__, Run.id == KnowledgeVersion.run_id).outerjoin(
            Round.__table__, Round.id == KnowledgeVersion.round_id
        )
    )  # fmt: skip
    if run_id is not None:
        stmt = stmt.where(KnowledgeVersion.run_id == run_id)
    return frame(store, stmt.order_by(KnowledgeVersion.id))
