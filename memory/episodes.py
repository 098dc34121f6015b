"""Writes of the episode aggregate: finished episodes with all their steps, in one transaction.

Steps are the only big table (millions of rows), so they are never ORM
objects: a batch of `StepRecord`s becomes one driver-level executemany inside
the episode's transaction, with token ids and log-probs packed as bytes
(`memory.codec`). An episode is only ever written whole, together with its
aggregates (return, won, n_steps, n_tokens), which is what makes a killed
writer harmless: a half-played episode was never written, so a replay of the
same seeds after a crash neither loses nor duplicates anything. (`status`
stays a column: a `running` row can only come from an older oel's
incremental writes, and queries leave such rows out by default.)

Mixed into `memory.store.ExperienceStore`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, insert
from sqlalchemy.exc import IntegrityError

from memory.codec import CodecError, encode_ids, encode_logprobs
from memory.db import first_line
from memory.errors import StoreError
from memory.models import Episode, Step, utcnow
from memory.records import StepRecord

EPISODE_HEADER = {
    "env_id", "task_id", "seed", "split", "run_id", "round_id", "checkpoint_id",
    "knowledge_version_id", "policy", "sampling", "action_mode",
}  # fmt: skip
"""Keys an episode header may carry; env_id, task_id, seed and split are required."""
_EPISODE_HEADER_REQUIRED = {"env_id", "task_id", "seed", "split"}
EPISODE_RESULT = {"total_return", "won", "lost", "feedback"}
"""Keys an episode result must carry; `prompt_computed` (tokens actually prefilled) and `valid_actions`
(steps whose action was admissible) are optional."""
_EPISODE_RESULT_OPTIONAL = {"prompt_computed", "valid_actions"}

# Column order of the step tuples below; it is the table's own order, so a positional driver takes them as is.
_STEP_COLUMNS = [c.name for c in Step.__table__.columns if c.name != "id"]


def _token_total(steps: Sequence[StepRecord], attr: str) -> int | None:
    """Sum of token counts over steps, or None when any step lacks its ids (the backend gave none)."""
    total = 0
    for step in steps:
        ids = getattr(step, attr)
        if ids is None:
            return None
        total += len(ids)
    return total


def _step_values(steps: Sequence[StepRecord]) -> list[tuple]:
    """Encoded step tuples (everything after `episode_id`), built before any transaction starts.

    This is the hot loop of the write path: attribute reads, two packings,
    the candidates' JSON (scored steps only) and a tuple per step.
    """
    try:
        return [
            (
                s.index, s.state, s.prompt, s.completion_text, s.action, s.observation, float(s.reward),
                encode_ids(s.prompt_ids), encode_ids(s.completion_ids), encode_logprobs(s.logprobs),
                float(s.latency_s), None if s.candidates is None else json.dumps(s.candidates.to_json()),
            )
            for s in steps
        ]  # fmt: skip
    except CodecError as exc:
        raise StoreError(f"bad step: {exc}") from None
    except AttributeError as exc:
        raise StoreError(f"steps must be memory.records.StepRecord objects: {exc}") from None


@functools.cache
def _step_insert_sql(dialect: Dialect) -> tuple[str, bool]:
    """The step INSERT compiled once per dialect, and whether it takes positional parameters."""
    compiled = insert(Step.__table__).compile(dialect=dialect, column_keys=_STEP_COLUMNS)
    if compiled.positional and list(compiled.positiontup or ()) != _STEP_COLUMNS:
        raise AssertionError("the steps table's column order no longer matches _STEP_COLUMNS")
    return compiled.string, bool(compiled.positional)


def _insert_steps(conn: Connection, rows: list[tuple]) -> None:
    """One driver-level executemany of full step tuples (episode_id first).

    The statement is compiled by SQLAlchemy from the table, but the rows go
    straight to the driver's executemany (sqlite3's C loop, psycopg's
    pipeline): SQLAlchemy's per-row parameter processing would otherwise
    cost more than the insert itself; the one JSON column (candidates) is
    therefore serialised by `_step_values` (both drivers take JSON text).
    (PostgreSQL's COPY was tried: on this 2-core machine the server's per-row
    work dominates and it was no faster, so one code path.)
    """
    sql, positional = _step_insert_sql(conn.dialect)
    params = rows if positional else [dict(zip(_STEP_COLUMNS, row, strict=True)) for row in rows]
    conn.exec_driver_sql(sql, params)


def _episode_row(
    header: dict[str, Any], steps: Sequence[StepRecord], result: dict[str, Any]
) -> dict[str, Any]:
    """The complete episode row for `write_episodes`, with its aggregates; bad keys raise StoreError."""
    unknown = (set(header) - EPISODE_HEADER) | {
        f"result.{k}" for k in set(result) - EPISODE_RESULT - _EPISODE_RESULT_OPTIONAL
    }
    missing = (_EPISODE_HEADER_REQUIRED - set(header)) | {f"result.{k}" for k in EPISODE_RESULT - set(result)}
    if unknown or missing:
        raise StoreError(
            f"write_episode: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
            f"header takes {sorted(EPISODE_HEADER)}, result takes {sorted(EPISODE_RESULT)}"
        )
    now = utcnow()
    return {
        **dict.fromkeys(EPISODE_HEADER),
        **header,
        "status": "complete",
        "total_return": float(result["total_return"]),
        "won": bool(result["won"]),
        "lost": bool(result["lost"]),
        "feedback": result["feedback"],
        "n_steps": len(steps),
        "n_tokens": _token_total(steps, "completion_ids"),
        "n_prompt_tokens": _token_total(steps, "prompt_ids"),
        "n_prompt_computed": result.get("prompt_computed"),
        "n_valid_actions": result.get("valid_actions"),
        "started_at": now,
        "finished_at": now,
    }


class EpisodeRecords:
    """Whole-episode writes."""

    def write_episode(
        self, header: dict[str, Any], steps: Sequence[StepRecord], result: dict[str, Any]
    ) -> int:
        """Write one finished episode in ONE transaction; return its id (see `write_episodes`)."""
        return self.write_episodes([(header, steps, result)])[0]

    def write_episodes(
        self, episodes: Sequence[tuple[dict[str, Any], Sequence[StepRecord], dict[str, Any]]]
    ) -> list[int]:
        """Write many finished episodes, e.g. a vectorised rollout's batch, in ONE transaction.

        Each item is (header, steps, result): `header` takes EPISODE_HEADER's
        keys, `result` EPISODE_RESULT's. Encoding happens before the
        transaction, so the write lock is held only for one episode insert
        (executemany with RETURNING) and one step executemany. Return the
        episode ids in input order.
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
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot write episodes: {first_line(exc)}") from None
