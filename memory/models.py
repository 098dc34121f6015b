"""The experience store's schema as SQLAlchemy 2.0 typed ORM models.

These classes are the single description of the schema: Alembic migrations
are written against them (a test checks that a migrated database matches them
exactly), queries select from their tables, and the hot write path inserts
into `Model.__table__` with Core executemany rather than building ORM objects.

Shape decisions:
- Episode-level aggregates (return, won, n_steps, n_tokens) live on the
  episode row, so success-rate queries never touch `steps`.
- `episodes.status` is `running` until the episode is finished and committed
  whole; queries leave `running` rows out by default, which is what makes a
  crashed writer harmless.
- Token ids and log-probs are packed bytes (see `memory.codec`).
- Timestamps are set in Python (UTC) so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so migrations can refer to them on both backends.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware current time, the default of every timestamp column."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the store; `Base.metadata` is what migrations target."""

    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}
    metadata = MetaData(naming_convention=NAMING)


class Run(Base):
    """A named experiment: a sequence of rounds with one configuration."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Round(Base):
    """One collect -> extract -> consolidate -> evaluate -> deploy cycle of a run.

    `status` is pending, the phase running now (collect ... deploy), done or
    failed; only phase transitions move it (`memory.rounds`).
    """

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("run_id", "idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    idx: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """A model checkpoint: a plain folder whose path lives here, with its lineage."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    fmt: Mapped[str] = mapped_column(String(40), default="hf")
    bits_per_weight: Mapped[float | None]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    method: Mapped[str | None] = mapped_column(String(40))
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeItem(Base):
    """One extracted piece of experiential knowledge, with votes for ADD/AGREE/REMOVE."""

    __tablename__ = "knowledge_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    text: Mapped[str] = mapped_column(Text)
    extractor_checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    author: Mapped[str | None] = mapped_column(String(200))
    """Who wrote a person-authored item (`oel knowledge add`); None for extracted items."""
    prompt_version: Mapped[str] = mapped_column(String(40), default="v1")
    votes: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeItemSource(Base):
    """Provenance: which episodes a knowledge item was extracted from."""

    __tablename__ = "knowledge_item_sources"
    item_id: Mapped[int] = mapped_column(ForeignKey("knowledge_items.id"), primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id"), primary_key=True)


class KnowledgeVersion(Base):
    """The rendered knowledge snapshot that was put in context (and distilled from).

    `kind` is `extracted` (rendered from knowledge items) or `raw` (raw
    trajectories pasted as context, the baseline); `meta` holds how it was made
    (source episodes, rejection counts, the version the extractor saw).
    """

    __tablename__ = "knowledge_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    text: Mapped[str] = mapped_column(Text)
    n_items: Mapped[int]
    n_tokens: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20), default="extracted", server_default="extracted")
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeVersionItem(Base):
    """Which items, in which order, make up a knowledge version."""

    __tablename__ = "knowledge_version_items"
    version_id: Mapped[int] = mapped_column(ForeignKey("knowledge_versions.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("knowledge_items.id"), primary_key=True)
    position: Mapped[int]


class Episode(Base):
    """One played episode with its settings and its aggregates (so queries skip `steps`)."""

    __tablename__ = "episodes"
    __table_args__ = (
        # covering index: success rate by round is answered from it alone (see memory.queries)
        Index(None, "status", "round_id", "won", "total_return", "n_steps", "n_tokens"),
        Index(None, "status", "env_id", "split"),
        Index(None, "checkpoint_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    knowledge_version_id: Mapped[int | None] = mapped_column(ForeignKey("knowledge_versions.id"))
    env_id: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int]
    split: Mapped[str] = mapped_column(String(40))
    policy: Mapped[str | None] = mapped_column(String(200))
    sampling: Mapped[dict[str, Any] | None]
    action_mode: Mapped[str | None] = mapped_column(String(20))
    """How actions were chosen: text, scored, or text-fallback (scored asked, no commands listed)."""
    status: Mapped[str] = mapped_column(String(20), default="running")
    total_return: Mapped[float | None]
    won: Mapped[bool | None]
    lost: Mapped[bool | None]
    feedback: Mapped[str | None] = mapped_column(Text)
    n_steps: Mapped[int] = mapped_column(default=0)
    n_tokens: Mapped[int | None] = mapped_column(default=0)
    n_prompt_tokens: Mapped[int | None] = mapped_column(default=0)
    n_prompt_computed: Mapped[int | None]
    """Prompt tokens actually run through the model (the rest came from the prefix cache)."""
    n_valid_actions: Mapped[int | None]
    """Steps whose action was one of the game's admissible commands; None if the game lists none."""
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Step(Base):
    """One agent step: texts, reward, packed token ids and log-probs, latency."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("episode_id", "idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id"))
    idx: Mapped[int]
    state: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    completion_text: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    observation: Mapped[str] = mapped_column(Text)
    reward: Mapped[float]
    prompt_ids: Mapped[bytes | None] = mapped_column(LargeBinary)
    completion_ids: Mapped[bytes | None] = mapped_column(LargeBinary)
    logprobs: Mapped[bytes | None] = mapped_column(LargeBinary)
    latency_s: Mapped[float] = mapped_column(default=0.0)
    candidates: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """Scored action mode: the candidate distribution this step sampled from (see `memory.records`)."""


class Consolidation(Base):
    """One consolidation job (OPCD, RL, ...) from a parent checkpoint to a new one."""

    __tablename__ = "consolidations"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    method: Mapped[str] = mapped_column(String(40))
    hparams: Mapped[dict[str, Any]]
    knowledge_version_id: Mapped[int | None] = mapped_column(ForeignKey("knowledge_versions.id"))
    parent_checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ConsolidationStep(Base):
    """Metrics of one optimizer step of a consolidation (loss, kl, tokens, seconds, ...)."""

    __tablename__ = "consolidation_steps"
    consolidation_id: Mapped[int] = mapped_column(ForeignKey("consolidations.id"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Phase(Base):
    """A round's phase as an idempotent job keyed by (run, round, phase), for resumption."""

    __tablename__ = "phases"
    __table_args__ = (UniqueConstraint("round_id", "phase"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    phase: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="running")
    attempts: Mapped[int] = mapped_column(default=1)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Deployment(Base):
    """An append-only log of which checkpoint a run serves; the newest row is the deployed one.

    Deployed agents (`oel play --follow`) read it before each wave of episodes,
    so a loop that finishes a round redeploys them without any shared process state.
    """

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
