"""Held-out evaluation, the one implementation behind `oel eval` and the loop's evaluate phase.

A *condition* is what was deployed and how it played: (checkpoint, knowledge
version or none, action mode, sampling temperature, environment options),
played on one split (`test` for reporting, `val` for choosing settings) of one
environment. Its episodes are the seeds `seed .. seed + episodes - 1` of the
split (the same tasks for every condition), stored tagged with the condition, so:

- evaluation is resumable: only the seeds the store lacks for this
  condition are played, and running it again just reports what is stored;
- a condition is evaluated once however many rounds need it: the loop's
  "consolidated" condition of round r is round r+1's "none" condition;
- the figures come from the stored episodes, one per seed: the pass rate
  over distinct tasks with its 95% Wilson interval over those tasks
  (`memory.stats`: two seeds that drew the same map are one observation,
  not two), the episode counts beside it, step accuracy where the game has
  a solver (the share of visited states whose move was optimal,
  `envs.grid.solver`; it moves long before the pass rate does), generated
  tokens per episode (what OEL's efficiency claims are about), prompt tokens
  per episode (what knowledge in context costs) and prompt tokens actually
  computed (what the prefix cache saved).

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

from agent.cli_errors import CommandError
from agent.policy import Policy, SamplingParams
from agent.ray_pool import OnEpisode, Player
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from envs.grid.solver import count_optimal
from memory import queries
from memory.replay import owed_seeds, played_modes
from memory.stats import wilson_interval
from memory.store import ExperienceStore

EVAL_SPLITS = ("val", "test")
"""Splits an evaluation may play: `val` to choose settings on, `test` to report."""


class EvaluationError(CommandError):
    """An evaluation that cannot mean what it says (a split that is trained on, ...)."""


@dataclass
class EvalConfig:
    """What to evaluate on and how; defaults are OEL's held-out FrozenLake setting sized for a CPU."""

    env_id: str = "oel/FrozenLake-v0"
    """Environment whose test split is played."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra `gymnasium.make` keyword arguments."""
    split: str = "test"
    """test (held out, for reporting) or val (for choosing settings, gates and teachers)."""
    episodes: int = 128
    """Episodes to play: seeds `seed` .. `seed + episodes - 1` of the split (each task counts once)."""
    batch: int = 32
    """Environments stepped together."""
    seed: int = 0
    """First held-out task."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    """Sampling settings (OEL: T=0.7, top_p=0.8, top_k=20)."""
    action_mode: str = "text"
    """text or scored (`agent.forms`); part of the condition: episodes of the other mode do not count."""

    def __post_init__(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise EvaluationError(
                f"evaluation plays the val or test split, not {self.split!r}: a pass rate on tasks the "
                "policy trains on measures memory, not learning"
            )


def condition_figures(df: pd.DataFrame, per_seed: bool = True) -> dict[str, Any]:
    """Pass rate over distinct tasks (95% interval over tasks), episode counts and token counts of a set
    of episodes (one per seed by default)."""
    if per_seed:
        df = df.drop_duplicates("seed", keep="first")
    n = len(df)
    wins = int(df["won"].astype(bool).sum()) if n else 0
    per_task = df.groupby("task_id")["won"].apply(lambda w: w.astype(bool).mean()) if n else pd.Series()
    tasks, task_score = len(per_task), float(per_task.sum())
    low, high = wilson_interval(task_score, tasks)

    def mean(column: str) -> float | None:
        values = df[column].dropna() if column in df else pd.Series(dtype=float)
        return float(values.mean()) if len(values) else None

    return {
        "episodes": n, "wins": wins, "tasks": tasks, "task_score": task_score,
        "pass_rate": task_score / tasks if tasks else 0.0, "ci_low": low, "ci_high": high,
        "episode_pass_rate": wins / n if n else 0.0,
        "tokens_per_episode": mean("n_tokens"), "prompt_tokens_per_episode": mean("n_prompt_tokens"),
        "prompt_computed_per_episode": mean("n_prompt_computed"),
    }  # fmt: skip


def step_accuracy(store: ExperienceStore, episode_ids: list[int]) -> tuple[int, int] | None:
    """(optimal moves, states that have one) over the steps of these episodes; None if no grid game."""
    steps = queries.step_actions(store, episode_ids)
    return count_optimal(steps["state"], steps["action"])


def _played_as(sampling: Any, config: EvalConfig) -> bool:
    """Whether an episode's recorded settings are this condition's (temperature, environment options)."""
    sampling = sampling if isinstance(sampling, dict) else {}
    temperature = sampling.get("temperature")
    if temperature is not None and float(temperature) != float(config.sampling.temperature):
        return False
    return dict(sampling.get("env_kwargs") or {}) == dict(config.env_kwargs)


def condition_episodes(
    store: ExperienceStore,
    run_id: int,
    config: EvalConfig,
    checkpoint_id: int,
    knowledge_version_id: int | None,
) -> pd.DataFrame:
    """The stored episodes of one condition on the configured split and seeds."""
    df = queries.episodes(store, run=run_id, split=config.split, env=config.env_id, checkpoint=checkpoint_id)
    seeds = range(config.seed, config.seed + config.episodes)
    knowledge = df["knowledge_version"]
    mine = knowledge.isna() if knowledge_version_id is None else knowledge == knowledge_version_id
    played = df["action_mode"].fillna("text")  # older episodes were all text
    mode = played.isin(played_modes(config.action_mode))
    same = df["sampling"].map(lambda sampling: _played_as(sampling, config)).astype(bool)
    return df[mine & mode & same & df["seed"].isin(seeds)]


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
    stored = condition_episodes(store, run_id, config, checkpoint_id, knowledge_version_id)["seed"]
    missing = owed_seeds(range(config.seed, config.seed + config.episodes), stored)
    if on_start is not None:
        on_start(len(missing))
    if missing:
        text = store.knowledge_text(knowledge_version_id) if knowledge_version_id is not None else None
        rollout = RolloutConfig(
            env_id=config.env_id, split=config.split, batch=config.batch, env_kwargs=dict(config.env_kwargs),
            sampling=config.sampling, action_mode=config.action_mode,
        )  # fmt: skip
        tags = EpisodeTags(run_id, round_id, checkpoint_id, knowledge_version_id)
        if play is not None:
            play(rollout, tags, text, missing, on_episode)
        else:
            run_rollouts(
                get_policy(), store, rollout, knowledge=text, tags=tags, seeds=missing, on_episode=on_episode
            )
    played = condition_episodes(store, run_id, config, checkpoint_id, knowledge_version_id)
    played = played.drop_duplicates("seed", keep="first")
    figures = condition_figures(played, per_seed=False)
    accuracy = step_accuracy(store, [int(i) for i in played["id"]])
    figures["step_accuracy"] = None if accuracy is None else accuracy[0] / accuracy[1]
    figures["steps_judged"] = None if accuracy is None else accuracy[1]
    return {**figures, "checkpoint_id": checkpoint_id, "knowledge_version_id": knowledge_version_id}
