"""The `info` dict every environment here returns, and the seed a reset plays: written once for all families.

The contract (docs/architecture.md, "Environments") asks every family for the
same keys: won, lost, score, max_score, task_id, seed (the seed actually
played), split, steps, and at the end of an episode a one-line `feedback`.
Each family adds what it knows on top (`admissible_commands`, `tools`, ...).
`played_seed` is the other piece every family repeated: a user's seed moved
into its split's range, or, for `reset(seed=None)`, one drawn from the env's
own `np_random` so gymnasium's seeding contract holds.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from envs.splits import SEED_SPAN, episode_seed


def played_seed(env: gymnasium.Env, split: str, seed: int | None) -> int:
    """The seed a reset plays on `split`; call it after gymnasium's `super().reset(seed=seed)`."""
    if seed is None:
        seed = int(env.np_random.integers(SEED_SPAN))
    return episode_seed(split, seed)


def episode_info(
    *, won: bool, lost: bool, score: float, max_score: float, task_id: str, seed: int, split: str, steps: int,
    feedback: str | None, **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    """The contract's keys plus a family's `extra` ones; `feedback` None while the episode runs (no key)."""
    info: dict[str, Any] = {
        "won": won, "lost": lost, "score": score, "max_score": max_score, "task_id": task_id, **extra,
        "seed": seed, "split": split, "steps": steps,
    }  # fmt: skip
    if feedback is not None:
        info["feedback"] = feedback
    return info
