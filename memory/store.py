"""The experience store's write API: runs, rounds, checkpoints, episodes and steps, knowledge, consolidations.

Everything an agent does lands here, and every consolidation round reads it
back. The shape follows from three requirements:

- Speed. Steps are the only big table (millions of rows), so they are never
  ORM objects: a batch of `StepRecord`s becomes one Core `insert()` executed
  with a list of parameter dicts (executemany) inside one transaction, with
  token ids and log-probs packed as bytes (`memory.codec`). `write_episode`
  writes a whole finished episode in one transaction, the rollout fast path.
- Visibility. An episode row is `running` until `finish_episode` (or
  `write_episode`) commits it as `complete`, together with its aggregates
  (return, won, n_steps, n_tokens); queries show only complete episodes by
  default. A writer killed mid-episode leaves a `running` row and its
  committed steps, nothing that looks finished.
- Many writers. Every write is one short transaction run through
  `retry_locked`, and on SQLite starts with BEGIN IMMEDIATE (see `memory.db`),
  so four processes writing at once wait for each other instead of failing.
  On PostgreSQL the same code runs under its row locking.

Schema versions (see `memory.migrate`): `open` creates an empty database at
head, refuses a database at a revision it does not know (a newer oel wrote
it), and asks for `oel store upgrade` on an older one rather than migrating a
shared database behind other writers' backs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, func, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from memory import migrate
from memory.codec import CodecError, encode_ids, encode_logprobs
from memory.db import describe, first_line, make_engine, parse_url, resolve_url, retry_locked
from memory.errors import StoreError
from memory.models import (
    Base,
    Checkpoint,
    Consolidation,
    ConsolidationStep,
    Episode,
    KnowledgeItem,
    KnowledgeItemSource,
    KnowledgeVersion,
    KnowledgeVersionItem,
    Phase,
    Round,
    Run,
    Step,
    utcnow,
)
from memory.records import StepRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ROUND_STATUSES", "ExperienceStore", "StoreError"]

T = TypeVar("T")

ROUND_STATUSES = ("pending", "collecting", "extracting", "consolidating", "evaluating", "done")
"""A round's states in order; it moves forward (phases may be skipped), or to `failed`."""

_EPISODE_HEADER = {
    "env_id", "task_id", "seed", "split", "run_id", "round_id", "checkpoint_id",
    "knowledge_version_id", "policy", "sampling",
}  # fmt: skip
_EPISODE_HEADER_REQUIRED = {"env_id", "task_id", "seed", "split"}
_EPISODE_RESULT = {"total_return", "won", "lost", "feedback"}
_MIGRATION_LOCK_KEY = 0x0E1_5701  # PostgreSQL advisory lock serialising schema creation


def _check_round_transition(old: str, new: str) -> None:
    """Raise unless `old -> new` is legal: forward (skips allowed), to failed, failed back to pending."""
    if new not in (*ROUND_STATUSES, "failed"):
        raise StoreError(f"unknown round status {new!r}; expected one of {', '.join(ROUND_STATUSES)}, failed")
    if old == new:
        return
    if old == "failed":
        if new == "pending":
            return
    elif new == "failed":
        if old != "done":
            return
    elif ROUND_STATUSES.index(new) > ROUND_STATUSES.index(old):
        return
    raise StoreError(f"illegal round transition {old} -> {new}")


def _token_total(steps: Sequence[StepRecord], attr: str) -> int | None:
    """Sum of token counts over steps, or None when any step lacks its ids (the backend gave none)."""
    total = 0
    for step in steps:
        ids = getattr(step, attr)
        if ids is None:
            return None
        total += len(ids)
    return total


# Column order of the step tuples below; it is the table's own order, so a positional driver takes them as is.
_STEP_COLUMNS = [c.name for c in Step.__table__.columns if c.name != "id"]


def _step_values(steps: Sequence[StepRecord]) -> list[tuple]:
    """Encoded step tuples (everything after `episode_id`), built before any transaction starts.

    This is the hot loop of the write path: attribute reads, two packings
    and a tuple per step, nothing else.
    """
    try:
        return [
            (
                s.index, s.state, s.prompt, s.completion_text, s.action, s.observation, float(s.reward),
                encode_ids(s.prompt_ids), encode_ids(s.completion_ids), encode_logprobs(s.logprobs),
                float(s.latency_s),
            )
            for s in steps
        ]  # fmt: skip
    except CodecError as exc:
        raise StoreError(f"bad step: {exc}") from None
    except AttributeError as exc:
        raise StoreError(f"steps must be memory.records.StepRecord objects: {exc}") from None


def _insert_steps(conn: Connection, rows: list[tuple]) -> None:
    """One driver-level executemany of full step tuples (episode_id first).

    The statement is compiled by SQLAlchemy from the table, but the rows go
    straight to the driver's executemany (sqlite3's C loop, psycopg's
    pipeline): SQLAlchemy's per-row parameter processing would otherwise
    cost more than the insert itself. (PostgreSQL's COPY was tried: on this
    2-core machine the server's per-row work dominates and it was no faster,
    so one code path it is.)
    """
    sql, positional = _step_insert_sql(conn.dialect)
    params = rows if positional else [dict(zip(_STEP_COLUMNS, row, strict=True)) for row in rows]
    conn.exec_driver_sql(sql, params)


@functools.cache
def _step_insert_sql(dialect: Dialect) -> tuple[str, bool]:
    """The step INSERT compiled once per dialect, and whether it takes positional parameters."""
    compiled = insert(Step.__table__).compile(dialect=dialect, column_keys=_STEP_COLUMNS)
    if compiled.positional and list(compiled.positiontup or ()) != _STEP_COLUMNS:
        raise AssertionError("the steps table's column order no longer matches _STEP_COLUMNS")
    return compiled.string, bool(compiled.positional)


def _episode_row(
    header: dict[str, Any], steps: Sequence[StepRecord], result: dict[str, Any]
) -> dict[str, Any]:
    """The complete episode row for `write_episodes`, with its aggregates; bad keys raise StoreError."""
    unknown = (set(header) - _EPISODE_HEADER) | {f"result.{k}" for k in set(result) - _EPISODE_RESULT}
    missing = (_EPISODE_HEADER_REQUIRED - set(header)) | {
        f"result.{k}" for k in _EPISODE_RESULT - set(result)
    }
    if unknown or missing:
        raise StoreError(
            f"write_episode: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
            f"header takes {sorted(_EPISODE_HEADER)}, result takes {sorted(_EPISODE_RESULT)}"
        )
    now = utcnow()
    return {
        **dict.fromkeys(_EPISODE_HEADER),
        **header,
        "status": "complete",
        "total_return": float(result["total_return"]),
        "won": bool(result["won"]),
        "lost": bool(result["lost"]),
        "feedback": result["feedback"],
        "n_steps": len(steps),
        "n_tokens": _token_total(steps, "completion_ids"),
        "n_prompt_tokens": _token_total(steps, "prompt_ids"),
        "started_at": now,
        "finished_at": now,
    }


class ExperienceStore:
    """A handle on one experience database; open it with `ExperienceStore.open(url)`."""

    def __init__(self, engine: Engine, url: str) -> None:
        """Wrap an engine made by `memory.db.make_engine`; prefer `ExperienceStore.open`."""
        self.engine = engine
        self.url = url
        self._writer = engine.execution_options(sqlite_immediate=True)

    # ------------------------------------------------------------------ opening and schema

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> ExperienceStore:
        """Open the store at `url` (None: `$OEL_DB_URL`, else `sqlite:///oel.db` in the working directory).

        A new, empty database is created at the current schema. An older
        schema raises StoreError asking for `oel store upgrade`, unless
        `upgrade=True`; an unknown (newer) revision always raises.
        """
        resolved = resolve_url(url)
        engine = make_engine(resolved)
        store = cls(engine, resolved)
        try:
            store._ensure_schema(upgrade)
        except BaseException:
            engine.dispose()
            raise
        return store

    @classmethod
    def upgrade(cls, url: str | None = None) -> tuple[str | None, str]:
        """Migrate the database at `url` to the current schema; return (revision before, revision after)."""
        resolved = resolve_url(url)
        engine = make_engine(resolved)
        try:
            with engine.connect() as conn:
                before = migrate.current_revision(conn)
            store = cls(engine, resolved)
            store._ensure_schema(upgrade=True)
        finally:
            engine.dispose()
        return before, migrate.head_revision()

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()

    def __enter__(self) -> ExperienceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def revision(self) -> str | None:
        """The schema revision stamped in the database."""
        with self.engine.connect() as conn:
            return migrate.current_revision(conn)

    def _ensure_schema(self, upgrade: bool) -> None:
        """Check the revision; create or migrate under a write lock when needed (see `open`)."""
        head = migrate.head_revision()
        try:
            with self.engine.connect() as conn:
                if migrate.current_revision(conn) == head:
                    return
            self._write(lambda conn: self._migrate_locked(conn, head, upgrade))
        except DBAPIError as exc:
            raise StoreError(f"cannot read the schema of {self._where()}: {first_line(exc)}") from None

    def _migrate_locked(self, conn: Connection, head: str, upgrade: bool) -> None:
        """Inside the write transaction: re-read the revision (another process may have won), then act."""
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        current = migrate.current_revision(conn)
        if current == head:
            return
        if current is None:
            ours = set(inspect(conn).get_table_names()) & set(Base.metadata.tables)
            if ours:
                raise StoreError(
                    f"{self._where()} has store tables ({', '.join(sorted(ours))}) but no schema revision; "
                    "it was not created by oel, refusing to touch it"
                )
        elif current not in migrate.known_revisions():
            raise StoreError(
                f"{self._where()} is at schema revision {current!r}, unknown to this oel (head {head!r}); "
                "it was written by a newer oel: upgrade oel"
            )
        elif not upgrade:
            raise StoreError(
                f"{self._where()} is at schema revision {current!r}, older than {head!r}: "
                f"run `oel store upgrade --db {self._where()}`"
            )
        migrate.upgrade(conn)

    def _where(self) -> str:
        return describe(parse_url(self.url))

    # ------------------------------------------------------------------ transactions

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` as one write transaction, retried while SQLite reports a lock."""

        def attempt() -> T:
            with self._writer.begin() as conn:
                return fn(conn)

        return retry_locked(attempt)

    def _scalar(self, stmt: Any) -> Any:
        """Run a read statement and return its single value (or None)."""
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar_one_or_none()

    @staticmethod
    def _insert(conn: Connection, model: type[Base], **values: Any) -> int:
        """Insert one row and return its id."""
        table = model.__table__
        return conn.execute(insert(table).returning(table.c.id), values).scalar_one()

    # ------------------------------------------------------------------ runs, rounds, checkpoints

    def create_run(self, name: str, config: dict | None = None) -> int:
        """Create a run named `name` (unique) and return its id."""

        def do(conn: Connection) -> int:
            return self._insert(conn, Run, name=name, config=config)

        try:
            return self._write(do)
        except IntegrityError:
            raise StoreError(f"a run named {name!r} already exists (use get_run to find it)") from None

    def get_run(self, name: str) -> int | None:
        """The id of the run named `name`, or None."""
        return self._scalar(select(Run.id).where(Run.name == name))

    def start_round(self, run_id: int, index: int) -> int:
        """The id of round `index` of run `run_id`, created `pending` if new (idempotent)."""
        find = select(Round.id).where(Round.run_id == run_id, Round.idx == index)

        def do(conn: Connection) -> int:
            existing = conn.execute(find).scalar_one_or_none()
            if existing is not None:
                return existing
            return self._insert(conn, Round, run_id=run_id, idx=index)

        try:
            return self._write(do)
        except IntegrityError:  # a concurrent writer created it first, or the run does not exist
            found = self._scalar(find)
            if found is None:
                raise StoreError(f"cannot start round {index}: no run with id {run_id}") from None
            return found

    def set_round_status(self, round_id: int, status: str) -> None:
        """Move a round to `status`; illegal transitions (backwards, out of done) raise StoreError."""

        def do(conn: Connection) -> None:
            old = conn.execute(select(Round.status).where(Round.id == round_id).with_for_update()).scalar()
            if old is None:
                raise StoreError(f"no round with id {round_id}")
            _check_round_transition(old, status)
            now = utcnow()
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if old == "pending" and status != "pending":
                values["started_at"] = now
            if status in ("done", "failed"):
                values["finished_at"] = now
            conn.execute(update(Round).where(Round.id == round_id).values(**values))

        self._write(do)

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
        return self._write_row(Checkpoint, values, "checkpoint")

    def checkpoint_for_path(self, path: str, *, run_id: int | None = None) -> int:
        """The id of the checkpoint first registered at `path`; a new root checkpoint if there is none."""
        stmt = select(Checkpoint.id).where(Checkpoint.path == path).order_by(Checkpoint.id).limit(1)
        found = self._scalar(stmt)
        if found is not None:
            return found
        return self.register_checkpoint(path=path, run_id=run_id, method="base")

    def _write_row(self, model: type[Base], values: dict[str, Any], what: str) -> int:
        """Insert one row in its own transaction, turning a dangling reference into a StoreError."""
        try:
            return self._write(lambda conn: self._insert(conn, model, **values))
        except IntegrityError as exc:
            raise StoreError(f"cannot record {what}: {first_line(exc)}") from None

    # ------------------------------------------------------------------ episodes and steps

    def start_episode(
        self,
        *,
        env_id: str,
        task_id: str,
        seed: int,
        split: str,
        run_id: int | None = None,
        round_id: int | None = None,
        checkpoint_id: int | None = None,
        knowledge_version_id: int | None = None,
        policy: str | None = None,
        sampling: dict | None = None,
    ) -> int:
        """Open an episode (status `running`, invisible to default queries); return its id."""
        values = {
            "env_id": env_id, "task_id": task_id, "seed": seed, "split": split, "run_id": run_id,
            "round_id": round_id, "checkpoint_id": checkpoint_id,
            "knowledge_version_id": knowledge_version_id, "policy": policy, "sampling": sampling,
        }  # fmt: skip
        return self._write_row(Episode, values, "episode")

    def append_steps(self, episode_id: int, steps: Sequence[StepRecord]) -> None:
        """Append a batch of steps to a running episode, in one transaction with one executemany."""
        if not steps:
            return
        rows = [(episode_id, *values) for values in _step_values(steps)]
        n_tokens = _token_total(steps, "completion_ids")
        n_prompt = _token_total(steps, "prompt_ids")
        counts = {
            "n_steps": Episode.n_steps + len(rows),
            "n_tokens": None if n_tokens is None else Episode.n_tokens + n_tokens,
            "n_prompt_tokens": None if n_prompt is None else Episode.n_prompt_tokens + n_prompt,
        }

        def do(conn: Connection) -> None:
            status = conn.execute(
                select(Episode.status).where(Episode.id == episode_id).with_for_update()
            ).scalar()
            if status != "running":
                raise StoreError(
                    f"cannot append steps to episode {episode_id}: "
                    + ("no such episode" if status is None else f"it is {status}")
                )
            _insert_steps(conn, rows)
            conn.execute(update(Episode).where(Episode.id == episode_id).values(**counts))

        try:
            self._write(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot append steps to episode {episode_id}: {first_line(exc)}") from None

    def finish_episode(
        self, episode_id: int, *, total_return: float, won: bool, lost: bool, feedback: str
    ) -> None:
        """Mark a running episode complete with its result; from now on default queries see it."""
        values = {
            "status": "complete", "total_return": float(total_return), "won": bool(won),
            "lost": bool(lost), "feedback": feedback, "finished_at": utcnow(),
        }  # fmt: skip

        def do(conn: Connection) -> int:
            stmt = (
                update(Episode).where(Episode.id == episode_id, Episode.status == "running").values(**values)
            )
            return conn.execute(stmt).rowcount

        if self._write(do) != 1:
            raise StoreError(f"cannot finish episode {episode_id}: it does not exist or is already complete")

    def write_episode(
        self, header: dict[str, Any], steps: Sequence[StepRecord], result: dict[str, Any]
    ) -> int:
        """Write a whole finished episode in ONE transaction; the fast path for rollouts.

        `header` takes start_episode's keyword arguments, `result` finish_episode's.
        Return the episode id.
        """
        return self.write_episodes([(header, steps, result)])[0]

    def write_episodes(
        self, episodes: Sequence[tuple[dict[str, Any], Sequence[StepRecord], dict[str, Any]]]
    ) -> list[int]:
        """Write many finished episodes, e.g. a vectorised rollout's batch, in ONE transaction.

        Each item is (header, steps, result) as for `write_episode`. Encoding
        happens before the transaction, so the write lock is held only for
        one episode insert (executemany with RETURNING) and one step
        executemany. Return the episode ids in input order.
        """
        if not episodes:
            return []
        headers = [_episode_row(header, steps, result) for header, steps, result in episodes]
        values = [_step_values(steps) for _header, steps, _result in episodes]
        table = Episode.__table__
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)

        def do(conn: Connection) -> list[int]:
            ids = list(conn.execute(stmt, headers).scalars())
            rows = [(episode_id, *v) for episode_id, vs in zip(ids, values, strict=True) for v in vs]
            if rows:
                _insert_steps(conn, rows)
            return ids

        try:
            return self._write(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot write episodes: {first_line(exc)}") from None

    # ------------------------------------------------------------------ knowledge

    def add_knowledge_item(
        self,
        *,
        run_id: int,
        round_id: int | None,
        text: str,
        source_episode_ids: Sequence[int],
        extractor_checkpoint_id: int | None = None,
        prompt_version: str = "v1",
        votes: int = 1,
    ) -> int:
        """Record one extracted knowledge item with the episodes it came from; return its id.

        `votes` is how many trajectories support it (more than 1 when several
        episodes of one extraction batch produced near-identical items).
        """
        item = {
            "run_id": run_id, "round_id": round_id, "text": text,
            "extractor_checkpoint_id": extractor_checkpoint_id, "prompt_version": prompt_version,
            "votes": votes,
        }  # fmt: skip

        def do(conn: Connection) -> int:
            item_id = self._insert(conn, KnowledgeItem, **item)
            sources = [{"item_id": item_id, "episode_id": e} for e in dict.fromkeys(source_episode_ids)]
            if sources:
                conn.execute(insert(KnowledgeItemSource.__table__), sources)
            return item_id

        try:
            return self._write(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot record knowledge item: {first_line(exc)}") from None

    def add_knowledge_version(
        self,
        *,
        run_id: int,
        round_id: int | None,
        text: str,
        item_ids: Sequence[int],
        n_tokens: int,
        kind: str = "extracted",
        meta: dict | None = None,
    ) -> int:
        """Record a rendered knowledge snapshot made of `item_ids` (in order); return its id.

        `kind` is `extracted` (rendered items) or `raw` (raw trajectories, no
        items); `meta` says how it was made.
        """
        if kind not in ("extracted", "raw"):
            raise StoreError(f"knowledge version kind must be extracted or raw, got {kind!r}")

        def do(conn: Connection) -> int:
            version_id = self._insert(
                conn, KnowledgeVersion, run_id=run_id, round_id=round_id, text=text,
                n_items=len(item_ids), n_tokens=n_tokens, kind=kind, meta=meta,
            )  # fmt: skip
            links = [{"version_id": version_id, "item_id": i, "position": p} for p, i in enumerate(item_ids)]
            if links:
                conn.execute(insert(KnowledgeVersionItem.__table__), links)
            return version_id

        try:
            return self._write(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot record knowledge version: {first_line(exc)}") from None

    def knowledge_text(self, version_id: int) -> str:
        """The rendered text of knowledge version `version_id`; StoreError if there is none."""
        text = self._scalar(select(KnowledgeVersion.text).where(KnowledgeVersion.id == version_id))
        if text is None:
            raise StoreError(f"there is no knowledge version {version_id}")
        return text

    def agree_knowledge_item(self, item_id: int, source_episode_ids: Sequence[int]) -> int:
        """AGREE: more trajectories support an item; link the new ones and add a vote each.

        Episodes already linked to the item add nothing, so re-running an
        extraction over the same episodes does not inflate votes. Return the
        item's votes afterwards.
        """

        def do(conn: Connection) -> int:
            if conn.execute(select(KnowledgeItem.id).where(KnowledgeItem.id == item_id)).scalar() is None:
                raise StoreError(f"there is no knowledge item {item_id}")
            linked = set(
                conn.execute(
                    select(KnowledgeItemSource.episode_id).where(KnowledgeItemSource.item_id == item_id)
                ).scalars()
            )
            new = [e for e in dict.fromkeys(source_episode_ids) if e not in linked]
            if new:
                conn.execute(
                    insert(KnowledgeItemSource.__table__),
                    [{"item_id": item_id, "episode_id": e} for e in new],
                )
                conn.execute(
                    update(KnowledgeItem)
                    .where(KnowledgeItem.id == item_id)
                    .values(votes=KnowledgeItem.votes + len(new))
                )
            return conn.execute(select(KnowledgeItem.votes).where(KnowledgeItem.id == item_id)).scalar_one()

        try:
            return self._write(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot add votes to knowledge item {item_id}: {first_line(exc)}") from None

    def latest_knowledge_version(self, run_id: int, kind: str | None = "extracted") -> tuple[int, str] | None:
        """(id, text) of the run's newest knowledge version of `kind` (None: any kind), or None if none.

        By default only `extracted` versions count, so a raw-trajectory
        baseline stored by `oel eval` never becomes the knowledge that is
        deployed or distilled.
        """
        stmt = (
            select(KnowledgeVersion.id, KnowledgeVersion.text)
            .where(KnowledgeVersion.run_id == run_id)
            .order_by(KnowledgeVersion.id.desc())
            .limit(1)
        )
        if kind is not None:
            stmt = stmt.where(KnowledgeVersion.kind == kind)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return (row.id, row.text) if row else None

    # ------------------------------------------------------------------ consolidations

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
        return self._write_row(Consolidation, values, "consolidation")

    def log_consolidation_step(self, consolidation_id: int, step: int, metrics: dict) -> None:
        """Record one optimizer step's metrics (loss, kl, tokens, seconds, ...)."""
        row = {"consolidation_id": consolidation_id, "step": step, "metrics": metrics}
        try:
            self._write(lambda conn: conn.execute(insert(ConsolidationStep.__table__), row))
        except IntegrityError as exc:
            raise StoreError(
                f"cannot log step {step} of consolidation {consolidation_id}: {first_line(exc)}"
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

        if self._write(do) != 1:
            raise StoreError(f"cannot finish consolidation {consolidation_id}: unknown or already complete")

    # ------------------------------------------------------------------ phases (resumable loop jobs)

    def begin_phase(self, round_id: int, phase: str) -> int:
        """Start (or restart after a failure or crash) the job `phase` of a round; return its id.

        Raises StoreError when that phase is already complete: a resuming loop
        asks `completed_phases` first and skips those.
        """

        def do(conn: Connection) -> int:
            run_id = conn.execute(select(Round.run_id).where(Round.id == round_id)).scalar()
            if run_id is None:
                raise StoreError(f"no round with id {round_id}")
            row = conn.execute(
                select(Phase.id, Phase.status).where(Phase.round_id == round_id, Phase.phase == phase)
            ).first()
            if row is None:
                return self._insert(conn, Phase, run_id=run_id, round_id=round_id, phase=phase)
            if row.status == "complete":
                raise StoreError(f"phase {phase!r} of round {round_id} is already complete")
            conn.execute(
                update(Phase)
                .where(Phase.id == row.id)
                .values(status="running", attempts=Phase.attempts + 1, error=None, started_at=utcnow())
            )
            return row.id

        return self._write(do)

    def complete_phase(self, phase_id: int, result: dict | None = None) -> None:
        """Mark a phase job complete, keeping what it produced (JSON) for resumption and reports."""
        self._finish_phase(phase_id, "complete", None, result)

    def fail_phase(self, phase_id: int, error: str) -> None:
        """Mark a phase job failed with a message; `begin_phase` may restart it."""
        self._finish_phase(phase_id, "failed", error, None)

    def _finish_phase(self, phase_id: int, status: str, error: str | None, result: dict | None) -> None:
        def do(conn: Connection) -> int:
            stmt = (
                update(Phase)
                .where(Phase.id == phase_id, Phase.status == "running")
                .values(status=status, error=error, result=result, finished_at=utcnow())
            )
            return conn.execute(stmt).rowcount

        if self._write(do) != 1:
            raise StoreError(f"cannot mark phase {phase_id} {status}: it is unknown or not running")

    def completed_phases(self, round_id: int) -> list[str]:
        """Names of a round's complete phases, in the order they finished."""
        stmt = (
            select(Phase.phase)
            .where(Phase.round_id == round_id, Phase.status == "complete")
            .order_by(Phase.finished_at, Phase.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def phase_results(self, round_id: int) -> dict[str, dict]:
        """Phase name -> the result it recorded, for a round's complete phases."""
        stmt = select(Phase.phase, Phase.result).where(Phase.round_id == round_id, Phase.status == "complete")
        with self.engine.connect() as conn:
            return {row.phase: dict(row.result or {}) for row in conn.execute(stmt)}

    # ------------------------------------------------------------------ ad-hoc SQL

    def read_only_sql(self, sql: str) -> pd.DataFrame:
        """Run ONE statement on a read-only transaction and return its rows; the database refuses writes.

        SQLite: `PRAGMA query_only` on the connection, and sqlite3 runs one
        statement per call. PostgreSQL: `SET TRANSACTION READ ONLY`, and the
        statement goes through a prepared statement, which cannot hold a
        second statement (so a `COMMIT; INSERT ...` cannot escape).
        """
        import pandas as pd  # lazily: writer processes never need it

        raw = self.engine.raw_connection()
        sqlite = self.dialect == "sqlite"
        try:
            cur = raw.cursor()
            if sqlite:
                cur.execute("PRAGMA query_only = ON")
                cur.execute("BEGIN")
                cur.execute(sql)
            else:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(sql, prepare=True)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cur.description else []
        except Exception as exc:  # the driver's own error class; both drivers' messages are clear
            raise StoreError(f"query failed: {first_line(exc)}") from None
        finally:
            raw.rollback()
            if sqlite:
                raw.cursor().execute("PRAGMA query_only = OFF")
            raw.close()
        return pd.DataFrame.from_records(rows, columns=columns)
