"""Held-out evaluation, the one implementation behind `oel eval` and the loop's evaluate phase.

A *condition* is what was deployed: (checkpoint, knowledge version or none,
action mode), played on the held-out split of one environment. Its episodes are the test
seeds `seed .. seed + episodes - 1` (task i is the i-th held-out map, the same
maps for every condition), stored tagged with the condition, so:

- evaluation is resumable: only the seeds the store lacks for this
  condition are played, and running it again just reports what is stored;
- a condition is evaluated once however many rounds need it: the loop's
  "consolidated" condition of round r is round r+1's "none" condition;
- the figures come from the stored episodes, one per seed: pass rate with
  its 95% Wilson interval, generated tokens per episode (what OEL's
  efficiency claims are about), prompt tokens per episode (what knowledge
  in context costs) and prompt tokens actually computed (what the prefix
  cache saved).

Sampling is the caller's (OEL evaluates at T=0.7), so pass rates on 128 maps
carry a few points of noise: compare conditions on the same seeds.

The missing seeds are played in this process by default, or by whatever
`play` the caller passes: Ray rollout workers (`agent.ray_pool.RolloutPool.player`)
write the same episodes with the same tags, so what counts as played is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from agent.policy import Policy, SamplingParams
from agent.ray_pool import OnEpisode, Player
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from memory import queries
from memory.stats import wilson_interval
from memory.store import ExperienceStore


@dataclass
class EvalConfig:
    """What to evaluate on and how; defaults are OEL's held-out FrozenLake setting sized for a CPU."""

    env_id: str = "oel/FrozenLake-v0"
    """Environment whose test split is played."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra `gymnasium.make` keyword arguments."""
    episodes: int = 128
    """Held-out tasks to play (seeds `seed` .. `seed + episodes - 1` of the test split)."""
    batch: int = 32
    """Environments stepped together."""
    seed: int = 0
    """First held-out task."""
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=128))
    """Sampling settings (OEL: T=0.7, top_p=0.8, top_k=20)."""
    action_mode: str = "text"
    """text or scored (`agent.forms`); part of the condition: episodes of the other mode do not count."""


def condition_figures(df: pd.DataFrame, per_seed: bool = True) -> dict[str, Any]:
    """Pass rate (with its 95% interval) and token counts of a set of episodes (one per seed by default)."""
    if per_seed:
        df = df.drop_duplicates("seed", keep="first")
    n = len(df)
    wins = int(df["won"].astype(bool).sum()) if n else 0
    low, high = wilson_interval(wins, n)

    def mean(column: str) -> float | None:
        values = df[column].dropna() if column in df else pd.Series(dtype=float)
        return float(values.mean()) if len(values) else None

    return {
        "episodes": n, "wins": wins, "pass_rate": wins / n if n else 0.0, "ci_low": low, "ci_high": high,
        "tokens_per_episode": mean("n_tokens"), "prompt_tokens_per_episode": mean("n_prompt_tokens"),
        "prompt_computed_per_episode": mean("n_prompt_computed"),
    }  # fmt: skip


def condition_episodes(
    store: ExperienceStore,
    run_id: int,
    config: EvalConfig,
    checkpoint_id: int,
    knowledge_version_id: int | None,
) -> pd.DataFrame:
    """The stored held-out episodes of one condition on the configured seeds."""
    df = queries.episodes(store, run=run_id, split="test", env=config.env_id, checkpoint=checkpoint_id)
    seeds = range(config.seed, config.seed + config.episodes)
    knowledge = df["knowledge_version"]
    mine = knowledge.isna() if knowledge_version_id is None else knowledge == knowledge_version_id
    played = df["action_mode"].fillna("text")  # older episodes were all text
    mode = played == "text" if config.action_mode == "text" else played.isin(["scored", "text-fallback"])
    return df[mine & mode & df["seed"].isin(seeds)]


def evaluate(
    get_policy: Callable[[], Policy],
    store: ExperienceStore,
    config: EvalConfig,
    *,
    run_id: int,
    checkpoint_id: int,
    knowledge_version_id: int | None = None,
    round_id: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_episode: OnEpisode | None = None,
    play: Player | None = None,
) -> dict[str, Any]:
    """Play the condition's missing held-out seeds, store them, and return the condition's figures.

    `get_policy()` is called only when there is something to play in this
    process (a resumed evaluation loads no model); `play`, when given, plays
    the seeds instead (Ray workers). `on_start(n)` is told how many episodes
    will be played now.
    """
    have = set(
        condition_episodes(store, run_id, config, checkpoint_id, knowledge_version_id)["seed"].astype(int)
    )
    missing = [s for s in range(config.seed, config.seed + config.episodes) if s not in have]
    if on_start is not None:
        on_start(len(missing))
    if missing:
        text = store.knowledge_text(knowledge_version_id) if knowledge_version_id is not None else None
        rollout = RolloutConfig(
            env_id=config.env_id, split="test", batch=config.batch, env_kwargs=dict(config.env_kwargs),
            sampling=config.sampling, action_mode=config.action_mode,
        )  # fmt: skip
        tags = EpisodeTags(run_id, round_id, checkpoint_id, knowledge_version_id)
        if play is not None:
            play(rollout, tags, text, missing, on_episode)
        else:
            run_rollouts(
                get_policy(), store, rollout, knowledge=text, tags=tags, seeds=missing, on_episode=on_episode
            )
    figures = condition_figures(
        condition_episodes(store, run_id, config, checkpoint_id, knowledge_version_id)
    )
    return {**figures, "checkpoint_id": checkpoint_id, "knowledge_version_id": knowledge_version_id}
