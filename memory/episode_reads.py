"""Reads of the episode aggregate: success rates, episodes, their steps, and the seeds already played.

Aggregates over episodes read only the `episodes` table (its rows carry
return, won, n_steps and n_tokens), which is why success-rate-by-round stays
fast with millions of steps; only `transcript`, `steps` and `step_actions`
touch the big `steps` table.

Incomplete episodes (status `running`: still being played, or left by a
crashed writer) are left out unless `include_incomplete=True`.

Filters shared by the functions: `run` (a run id or name), `round` (a round
index), `env` (env id), `split`, `checkpoint` (checkpoint id),
`knowledge_version` (knowledge version id), `policy`, `action_mode`. They
become conditions on episode columns only (`_filtered`), so filtering never
needs a join.

Part of the read API `memory.queries`, which re-exports every public name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Select, case, func, select

from memory.errors import StoreError
from memory.frames import decode_blobs, frame
from memory.models import Episode, Round, Run, Step
from memory.stats import wilson_interval
from memory.store import ExperienceStore

GROUP_KEYS = {
    "run": Episode.run_id,
    "round": Episode.round_id,
    "env": Episode.env_id,
    "split": Episode.split,
    "checkpoint": Episode.checkpoint_id,
    "knowledge_version": Episode.knowledge_version_id,
    "policy": Episode.policy,
    "action_mode": Episode.action_mode,
}
"""What `success_rate(by=...)` can group on and filters can select, as episode columns.

`run` and `round` are shown (and filtered) as the run's name and the round's
index, but grouped on the ids, which the covering index on episodes holds.
"""


def _with_joins(stmt: Select) -> Select:
    """Join rounds and runs onto an episodes SELECT, for the round index and run name."""
    return stmt.outerjoin(Round, Round.id == Episode.round_id).outerjoin(Run, Run.id == Episode.run_id)


def _filtered(stmt: Select, include_incomplete: bool, filters: dict[str, Any]) -> Select:
    """Apply the shared filters (see module docstring) as conditions on episode columns only.

    Run names and round indices become `IN (SELECT id ...)` over the tiny runs
    and rounds tables, so no join is needed to filter. None means no filter.
    """
    if not include_incomplete:
        stmt = stmt.where(Episode.status == "complete")
    unknown = set(filters) - set(GROUP_KEYS)
    if unknown:
        raise StoreError(f"unknown filter(s) {sorted(unknown)}; filters are {sorted(GROUP_KEYS)}")
    for key, value in filters.items():
        if value is None:
            continue
        if key == "run" and isinstance(value, str):
            stmt = stmt.where(Episode.run_id.in_(select(Run.id).where(Run.name == value)))
        elif key == "round":
            stmt = stmt.where(Episode.round_id.in_(select(Round.id).where(Round.idx == value)))
        else:
            stmt = stmt.where(GROUP_KEYS[key] == value)
    return stmt


def success_rate(
    store: ExperienceStore,
    by: Sequence[str] = ("round",),
    include_incomplete: bool = False,
    **filters: Any,
) -> pd.DataFrame:
    """Episodes, success rate, mean return, steps and tokens per episode, grouped by `by`.

    `by` names any of GROUP_KEYS (round, env, split, checkpoint,
    knowledge_version, run, policy); an empty `by` gives one overall row.
    `ci_low`/`ci_high` are the 95% Wilson interval of the success rate.
    `tokens_per_episode` averages generated tokens over episodes whose
    backend reported them.

    Shape, for speed: an inner query sums per group of episode columns only
    (round_id, not the round index), which SQLite answers from the covering
    index on (status, round_id, won, total_return, n_steps, n_tokens) without
    touching a table row; an outer query then maps ids to run names and round
    indices (rounds of different runs with the same index merge) and re-sums.
    Ratios are taken in pandas, so no backend does integer division.
    """
    unknown = [key for key in by if key not in GROUP_KEYS]
    if unknown:
        raise StoreError(f"cannot group by {unknown}; choose from {sorted(GROUP_KEYS)}")
    inner_keys = [GROUP_KEYS[key].label(key) for key in by]
    inner = _filtered(
        select(
            *inner_keys,
            func.count().label("n"),
            func.sum(case((Episode.won, 1), else_=0)).label("wins"),
            func.sum(Episode.total_return).label("ret"),
            func.count(Episode.total_return).label("n_ret"),
            func.sum(Episode.n_steps).label("steps"),
            func.sum(Episode.n_tokens).label("tokens"),
            func.count(Episode.n_tokens).label("n_tokens"),
        ),
        include_incomplete,
        filters,
    )
    if inner_keys:
        inner = inner.group_by(*inner_keys)
    agg = inner.subquery()
    outer_keys = []
    source = agg
    for key in by:
        if key == "round":
            source = source.outerjoin(Round, Round.id == agg.c.round)
            outer_keys.append(Round.idx.label("round"))
        elif key == "run":
            source = source.outerjoin(Run, Run.id == agg.c.run)
            outer_keys.append(Run.name.label("run"))
        else:
            outer_keys.append(agg.c[key])
    sums = [func.sum(agg.c[c]).label(c) for c in ("n", "wins", "ret", "n_ret", "steps", "tokens", "n_tokens")]
    stmt = select(*outer_keys, *sums).select_from(source)
    if outer_keys:
        stmt = stmt.group_by(*outer_keys).order_by(*outer_keys)
    df = frame(store, stmt)
    n = df["n"].astype(float)
    out = df[list(by)].copy()
    out["episodes"] = df["n"].fillna(0).astype(int)
    out["success_rate"] = df["wins"].astype(float) / n
    intervals = [wilson_interval(int(w or 0), int(k or 0)) for w, k in zip(df["wins"], df["n"], strict=True)]
    out["ci_low"] = [low for low, _high in intervals]
    out["ci_high"] = [high for _low, high in intervals]
    out["mean_return"] = df["ret"].astype(float) / df["n_ret"].astype(float)
    out["steps_per_episode"] = df["steps"].astype(float) / n
    out["tokens_per_episode"] = df["tokens"].astype(float) / df["n_tokens"].astype(float)
    return out


_EPISODE_COLUMNS = [
    Episode.id,
    Run.name.label("run"),
    Round.idx.label("round"),
    Episode.env_id.label("env"),
    Episode.task_id,
    Episode.seed,
    Episode.split,
    Episode.checkpoint_id.label("checkpoint"),
    Episode.knowledge_version_id.label("knowledge_version"),
    Episode.policy,
    Episode.sampling,
    Episode.action_mode,
    Episode.status,
    Episode.total_return,
    Episode.won,
    Episode.lost,
    Episode.n_steps,
    Episode.n_tokens,
    Episode.n_prompt_tokens,
    Episode.n_prompt_computed,
    Episode.n_valid_actions,
    Episode.feedback,
    Episode.started_at,
    Episode.finished_at,
]


def episodes(
    store: ExperienceStore,
    *,
    run: int | str | None = None,
    env: str | None = None,
    split: str | None = None,
    round: int | None = None,
    checkpoint: int | None = None,
    knowledge_version: int | None = None,
    policy: str | None = None,
    action_mode: str | None = None,
    won: bool | None = None,
    seed: int | None = None,
    limit: int | None = None,
    include_incomplete: bool = False,
) -> pd.DataFrame:
    """The episodes matching the filters, oldest first, one row each with settings and results."""
    stmt = select(*_EPISODE_COLUMNS).select_from(Episode)
    filters = {
        "run": run, "env": env, "split": split, "round": round, "checkpoint": checkpoint,
        "knowledge_version": knowledge_version, "policy": policy, "action_mode": action_mode,
    }  # fmt: skip
    stmt = _filtered(_with_joins(stmt), include_incomplete, filters)
    if won is not None:
        stmt = stmt.where(Episode.won == won)
    if seed is not None:
        stmt = stmt.where(Episode.seed == seed)
    stmt = stmt.order_by(Episode.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return frame(store, stmt)


PAGE_SORTS = {
    "id": Episode.id,
    "return": Episode.total_return,
    "steps": Episode.n_steps,
    "tokens": Episode.n_tokens,
}
"""What `episode_page` can sort on."""


def episode_page(
    store: ExperienceStore, *, sort: str = "id", descending: bool = True, limit: int = 100, offset: int = 0,
    won: bool | None = None, **filters: Any,
) -> tuple[pd.DataFrame, int]:  # fmt: skip
    """One page of the episodes matching `filters` (GROUP_KEYS), and how many match in all.

    Only the page's rows are read (LIMIT/OFFSET on an indexed order), so a
    viewer pages through 100k+ episodes without loading them.
    """
    if sort not in PAGE_SORTS:
        raise StoreError(f"cannot sort by {sort!r}; choose from {', '.join(PAGE_SORTS)}")
    column = PAGE_SORTS[sort]
    stmt = _filtered(_with_joins(select(*_EPISODE_COLUMNS).select_from(Episode)), False, filters)
    count = _filtered(select(func.count()).select_from(Episode), False, filters)
    if won is not None:
        stmt, count = stmt.where(Episode.won == won), count.where(Episode.won == won)
    order = [column.desc(), Episode.id.desc()] if descending else [column.asc(), Episode.id.asc()]
    page = frame(store, stmt.order_by(*order).limit(limit).offset(offset))
    return page, int(store.scalar(count))


def episode(store: ExperienceStore, episode_id: int) -> dict[str, Any]:
    """One episode's row (as for `episodes`), complete or not; StoreError if there is none."""
    df = frame(
        store, _with_joins(select(*_EPISODE_COLUMNS).select_from(Episode)).where(Episode.id == episode_id)
    )
    if df.empty:
        raise StoreError(f"no episode with id {episode_id}")
    return df.iloc[0].to_dict()


_STEP_COLUMNS = [
    Step.idx.label("index"),
    Step.state,
    Step.prompt,
    Step.completion_text,
    Step.action,
    Step.observation,
    Step.reward,
    Step.latency_s,
    Step.prompt_ids,
    Step.completion_ids,
    Step.logprobs,
    Step.candidates,
]


def transcript(store: ExperienceStore, episode_id: int) -> pd.DataFrame:
    """One episode's steps in order, with token ids and log-probs decoded to Python lists."""
    episode(store, episode_id)  # raises a clear error for an unknown id
    stmt = select(*_STEP_COLUMNS).where(Step.episode_id == episode_id).order_by(Step.idx)
    return decode_blobs(frame(store, stmt))


def steps(
    store: ExperienceStore,
    *,
    run: int | str | None = None,
    round: int | None = None,
    split: str | None = None,
    env: str | None = None,
    checkpoint: int | None = None,
    policy: str | None = None,
    won: bool | None = None,
    include_incomplete: bool = False,
) -> pd.DataFrame:
    """Steps with their episode's settings and outcome: the training rows of consolidation.

    Columns: episode_id, index, state, prompt, completion_text, action,
    observation, reward, latency_s, prompt_ids, completion_ids, logprobs
    (decoded lists), candidates (scored mode, else None), and the episode's
    env, split, round, checkpoint, knowledge_version, seed, policy, sampling
    (the settings it was played with), action_mode, episode_return,
    episode_won, episode_lost. Ordered by episode, then step.
    """
    stmt = select(
        Step.episode_id,
        *_STEP_COLUMNS,
        Episode.env_id.label("env"),
        Episode.split,
        Round.idx.label("round"),
        Episode.checkpoint_id.label("checkpoint"),
        Episode.knowledge_version_id.label("knowledge_version"),
        Episode.seed,
        Episode.policy,
        Episode.sampling,
        Episode.action_mode,
        Episode.total_return.label("episode_return"),
        Episode.won.label("episode_won"),
        Episode.lost.label("episode_lost"),
    ).select_from(Step.__table__.join(Episode.__table__, Episode.id == Step.episode_id))
    filters = {
        "run": run, "round": round, "split": split, "env": env, "checkpoint": checkpoint, "policy": policy,
    }  # fmt: skip
    stmt = _filtered(_with_joins(stmt), include_incomplete, filters)
    if won is not None:
        stmt = stmt.where(Episode.won == won)
    return decode_blobs(frame(store, stmt.order_by(Step.episode_id, Step.idx)))


def step_actions(store: ExperienceStore, episode_ids: Sequence[int]) -> pd.DataFrame:
    """The (state, action) of every step of the given episodes, without token blobs (cheap to read).

    Columns: episode_id, index, state, action, observation, reward. Ordered by episode, then step.
    """
    frames = []
    ids = [int(i) for i in episode_ids]
    for start in range(0, len(ids), 500):  # bound the IN list (SQLite's variable limit)
        stmt = (
            select(Step.episode_id, Step.idx.label("index"), Step.state, Step.action, Step.observation,
                   Step.reward)
            .where(Step.episode_id.in_(ids[start : start + 500]))
            .order_by(Step.episode_id, Step.idx)
        )  # fmt: skip
        frames.append(frame(store, stmt))
    if not frames:
        return pd.DataFrame(columns=["episode_id", "index", "state", "action", "observation", "reward"])
    return pd.concat(frames, ignore_index=True)


_SEED_TAGS = {
    "run_id": Episode.run_id,
    "round_id": Episode.round_id,
    "checkpoint_id": Episode.checkpoint_id,
    "knowledge_version_id": Episode.knowledge_version_id,
}


def seed_counts(
    store: ExperienceStore,
    *,
    env_id: str,
    split: str,
    action_modes: Sequence[str] | None = None,
    **tags: int | None,
) -> dict[int, int]:
    """Seed -> how many complete episodes the store holds with exactly these tags.

    `tags` are any of run_id, round_id, checkpoint_id and knowledge_version_id:
    a tag that is passed must match (None matches only NULL), a tag left out
    is not filtered on. This is how a replay finds the seeds it must skip.
    """
    unknown = set(tags) - set(_SEED_TAGS)
    if unknown:
        raise StoreError(f"unknown tag(s) {sorted(unknown)}; tags are {sorted(_SEED_TAGS)}")
    stmt = select(Episode.seed, func.count()).where(
        Episode.status == "complete", Episode.env_id == env_id, Episode.split == split
    )
    for key, value in tags.items():
        column = _SEED_TAGS[key]
        stmt = stmt.where(column.is_(None) if value is None else column == value)
    if action_modes is not None:
        stmt = stmt.where(Episode.action_mode.in_(list(action_modes)))
    with store.reading() as conn:
        return {int(seed): int(n) for seed, n in conn.execute(stmt.group_by(Episode.seed))}
