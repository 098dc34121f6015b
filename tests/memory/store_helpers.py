"""Helpers shared by the store tests and their writer subprocess (a uniquely named module, not a conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import insert

from memory.models import Episode, Step
from memory.records import StepRecord
from memory.store import ExperienceStore

WRITER = Path(__file__).with_name("store_writer.py")


def make_steps(n: int, tag: int = 0, with_tokens: bool = True) -> list[StepRecord]:
    """`n` distinct steps whose content encodes (tag, index), so readers can check integrity."""
    return [
        StepRecord(
            index=i,
            state=f"state {tag}/{i}",
            prompt=f"prompt {tag}/{i}",
            completion_text=f"reply {tag}/{i} [go {i}]",
            action=f"go {i}",
            observation=f"obs {tag}/{i}",
            reward=float(i == n - 1),
            prompt_ids=[tag, i, 7, 8] if with_tokens else None,
            completion_ids=[tag, i, i + 1] if with_tokens else None,
            logprobs=[-0.5, -0.25, -0.125] if with_tokens else None,
            latency_s=0.01 * i,
        )
        for i in range(n)
    ]


def writer_cmd(*args: str) -> list[str]:
    """The command line of the writer subprocess (tests/memory/writer.py)."""
    return [sys.executable, str(WRITER), *args]


def insert_running_episode(store: ExperienceStore, steps: list[StepRecord], **header: object) -> int:
    """Insert a `running` episode with committed steps, as an older oel's killed incremental writer left.

    Production code only writes whole episodes; this reproduces what old
    databases may still hold, so the tests can check queries keep hiding it.
    """
    values = {"env_id": "oel/Test-v0", "task_id": "old", "seed": 0, "split": "train", **header,
              "status": "running", "n_steps": len(steps)}  # fmt: skip

    def do(conn):
        episode_id = store.insert_row(conn, Episode, **values)
        rows = [{"episode_id": episode_id, "idx": s.index, "state": s.state, "prompt": s.prompt,
                 "completion_text": s.completion_text, "action": s.action, "observation": s.observation,
                 "reward": s.reward} for s in steps]  # fmt: skip
        if rows:
            conn.execute(insert(Step.__table__), rows)
        return episode_id

    return store.transaction(do)
