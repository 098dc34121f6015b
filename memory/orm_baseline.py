"""The naive way to write episodes, kept as a baseline: one ORM object per step, flushed one at a time.

Nothing in oel writes this way; `memory.episodes` is the write path (a batch
of steps becomes one driver-level executemany). benchmarks/store.py measures
that path against this one, which is what a first ORM version would do: an
`Episode` object marked `running`, then one `Step` object per row, each
added and flushed on its own (one INSERT per row), the episode marked
`complete` and committed. It lives in `memory` because only memory touches
SQL and `memory.models` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from memory.codec import encode_ids, encode_logprobs
from memory.models import Episode, Step
from memory.records import StepRecord
from memory.store import ExperienceStore


def write_episodes_orm(
    store: ExperienceStore, episodes: Iterable[tuple[dict[str, Any], Sequence[StepRecord]]]
) -> None:
    """Write each (header, steps) the naive way: one INSERT per step, one commit per episode.

    `header` takes the keys of `memory.episodes.EPISODE_HEADER` (None values
    are left out). The episodes get no result (return, won, aggregates): the
    baseline measures the per-row cost only.
    """
    with Session(store.engine) as session:
        for header, steps in episodes:
            episode = Episode(**{k: v for k, v in header.items() if v is not None}, status="running")
            session.add(episode)
            session.flush()
            for s in steps:
                session.add(
                    Step(
                        episode_id=episode.id,
                        idx=s.index,
                        state=s.state,
                        prompt=s.prompt,
                        completion_text=s.completion_text,
                        action=s.action,
                        observation=s.observation,
                        reward=s.reward,
                        prompt_ids=encode_ids(s.prompt_ids),
                        completion_ids=encode_ids(s.completion_ids),
                        logprobs=encode_logprobs(s.logprobs),
                        latency_s=s.latency_s,
                    )  # fmt: skip
                )
                session.flush()
            episode.status = "complete"
            session.commit()
