"""Training data for consolidation: prompt pools from the store's read API, and the batch order.

- Prompt pools are a round's logged per-turn *states* (knowledge-free history
  text), deduplicated in first-seen order: FrozenLake episodes of one task
  share their first state, and training ten times on one state per batch
  would only waste compute. SFT's pool is the (state, completion ids) pairs
  of won episodes instead; the scored methods' pool (`scored_pool`) is the
  unique (state, candidates) of scored steps.
- The batch order is a pure function of (seed, step): epoch e visits the
  pool in `randperm(n, seed + e)` order and step s takes the next `batch`
  items of that endless stream. A resumed run therefore continues exactly
  where it stopped, with no order state to save.

Reads go through `memory.queries` only (docs/architecture.md: only memory
touches SQL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch

from distill.candidates import ScoredState
from distill.errors import ConsolidationError
from memory import queries
from memory.store import ExperienceStore

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


@dataclass
class Response:
    """One text-mode training row: the state, the student's prompt ids, and the response tokens to score."""

    state: str
    prompt_ids: list[int]
    response_ids: list[int]


@dataclass(frozen=True)
class Example:
    """One training prompt: a logged state, and for SFT the completion ids to imitate."""

    state: str
    completion_ids: tuple[int, ...] | None = None


def round_steps(
    store: ExperienceStore, run: str, round_index: int, split: str, action_mode: str | None = None
) -> pd.DataFrame:
    """The logged steps of one round (a DataFrame); ConsolidationError when there are none."""
    df = queries.steps(store, run=run, round=round_index, split=split)
    if action_mode is not None and not df.empty:
        df = df[df["action_mode"].fillna("text") == action_mode]
    if df.empty:
        mode = "" if action_mode is None else f" {action_mode}-mode"
        raise ConsolidationError(
            f"run {run!r} has no logged{mode} {split} steps in round {round_index}; "
            "play that round first (or pick another --round/--run)"
        )
    return df


def check_replay(replay: int) -> None:
    """ConsolidationError unless `replay` is a count of earlier rounds (>= 0) or -1 (every one)."""
    if replay < -1:
        raise ConsolidationError(f"replay must be >= -1 (-1 = every earlier round), got {replay}")


def replay_steps(store: ExperienceStore, run: str, round_index: int, split: str, replay: int) -> pd.DataFrame:
    """The logged steps of round `round_index` and the `replay` rounds before it (-1: every earlier round).

    Replay reuses the run's whole experience instead of the round's alone, as
    ReST, ExpeL and Trinity's buffer do; whether old steps are still valid
    training data is the method's to say (`distill.credit` explains why a
    deterministic game's transitions never go stale).
    """
    df = queries.steps(store, run=run, split=split)
    first = 0 if replay < 0 else round_index - replay
    df = df[df["round"].notna()]
    df = df[(df["round"] >= first) & (df["round"] <= round_index)]
    if df.empty:
        raise ConsolidationError(
            f"run {run!r} has no logged {split} steps in rounds {first}..{round_index}; play a round first"
        )
    return df


def state_pool(steps: pd.DataFrame) -> list[Example]:
    """The unique logged states of `round_steps`, in first-seen order."""
    return [Example(state) for state in dict.fromkeys(steps["state"])]


def won_pool(steps: pd.DataFrame) -> list[Example]:
    """The unique (state, completion ids) pairs of the won episodes in `round_steps`; [] without wins."""
    won = steps[steps["episode_won"].astype(bool) & steps["completion_ids"].notna()]
    pairs = dict.fromkeys((s, tuple(ids)) for s, ids in zip(won["state"], won["completion_ids"], strict=True))
    return [Example(state, ids) for state, ids in pairs]


def scored_pool(
    store: ExperienceStore, run: str, round_index: int, split: str, won_only: bool = False, replay: int = 0
) -> list[ScoredState]:
    """The round's unique scored states (state, candidates) in first-seen order, and those of `replay`
    earlier rounds (-1: all); of won episodes if asked (an empty pool when none was won)."""
    if replay:
        steps = replay_steps(store, run, round_index, split, replay)
    else:
        steps = round_steps(store, run, round_index, split)
    steps = steps[steps["candidates"].notna()]
    if steps.empty:
        raise ConsolidationError(
            f'round {round_index} of run {run!r} has no scored steps; play it with action_mode = "scored"'
        )
    if won_only:
        steps = steps[steps["episode_won"].astype(bool)]
    pool: dict[tuple, ScoredState] = {}
    for row in steps.itertuples(index=False):
        state = ScoredState.from_step(row.state, row.prompt_ids, row.candidates)
        pool.setdefault(
            (state.state, tuple(map(tuple, state.candidate_ids)), won_only and state.chosen), state
        )
    return list(pool.values())


def round_checkpoint_path(store: ExperienceStore, steps: pd.DataFrame) -> str | None:
    """The checkpoint path most of the round's steps were played with, or None if unrecorded."""
    ids = Counter(int(c) for c in steps["checkpoint"].dropna())
    if not ids:
        return None
    return store.checkpoint_path(ids.most_common(1)[0][0])


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Pool indices of step `step` (from 0): the next `batch` items of the seeded epoch stream."""
    if n < 1:
        raise ConsolidationError("the prompt pool is empty")
    picked = []
    for position in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(position, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        picked.append(int(order[offset]))
    return picked


def take_batch(pool: Sequence[T], batch: int, step: int, seed: int) -> list[T]:
    """The items of optimizer step `step` (from 1) in the seeded epoch order of `pool`."""
    return [pool[i] for i in batch_indices(len(pool), batch, step - 1, seed)]
