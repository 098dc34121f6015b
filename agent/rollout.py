"""Batched rollouts: N environments in lockstep, ONE policy call per step, every step into the store.

The loop keeps `batch` slots busy. Each slot plays one episode at a time; on
every iteration the live slots' prompts go to the policy in a single batched
`generate`, their replies are parsed into actions and stepped, and a slot
whose episode ended is refilled with the next seed until the episode budget
is spent. So the model always sees as full a batch as the budget allows.

Episodes are written whole (`ExperienceStore.write_episodes`, one transaction
per loop iteration for all episodes that ended in it). A rollout killed part
way therefore leaves only complete episodes behind; which seeds are done is
read back from the store by the caller that wants to resume (the online
loop), so no episode is lost or counted twice.

Each step records the exact prompt and completion token ids and log-probs the
policy returned, together with the knowledge-free state text, so training
never re-tokenizes and OPCD can rebuild teacher prompts with any knowledge.
How a reply becomes an action is the policy form's job (`agent.forms`: OEL's
free text, or scored candidates); a scored step also stores its candidate
distribution, and every episode records the action mode it was played in
and the prompt tokens actually computed (the rest came from the prefix cache).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.forms import make_form
from agent.policy import Policy, SamplingParams
from agent.prompts import PromptConfig
from envs.vector import TextVectorEnv
from memory.records import StepRecord
from memory.store import ExperienceStore


@dataclass
class RolloutConfig:
    """What to play and how; the defaults are a small FrozenLake run with OEL's sampling settings."""

    env_id: str = "oel/FrozenLake-v0"
    """Registered environment id (see `oel envs list`)."""
    split: str = "train"
    """Task split: 'train' for collection, 'val' for choosing settings, 'test' for held-out evaluation."""
    episodes: int = 8
    """Episode budget: how many episodes to play in total."""
    batch: int = 8
    """How many environments are stepped together (one batched policy call per step)."""
    seed: int = 0
    """Episode i plays seed `seed + i` of the split (where a game lists its tasks, its (seed+i)-th task)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for `gymnasium.make` (size, holes, max_steps, ...)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    """Sampling settings (OEL: T=0.7, top_p=0.8, top_k=20)."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """How much history the prompt shows."""
    action_mode: str = "text"
    """text (OEL: free-text reply, bracketed action parsed) or scored (admissible commands scored)."""


@dataclass
class EpisodeTags:
    """Provenance written on every episode of a rollout."""

    run_id: int | None = None
    round_id: int | None = None
    checkpoint_id: int | None = None
    knowledge_version_id: int | None = None


@dataclass
class FinishedEpisode:
    """A finished episode as the progress callback sees it."""

    episode_id: int
    seed: int
    won: bool
    total_return: float
    steps: int
    generated_tokens: int


@dataclass
class RolloutSummary:
    """Totals of one rollout call."""

    episodes: list[FinishedEpisode] = field(default_factory=list)
    seconds: float = 0.0
    policy_calls: int = 0
    env_steps: int = 0
    generated_tokens: int = 0
    """Tokens generated (text steps) or scored as the chosen command (scored steps)."""
    prompt_tokens: int = 0
    """Prompt tokens of every step, as sent."""
    prompt_computed: int = 0
    """Prompt tokens actually run through the model (the rest came from the prefix cache)."""
    scored_tokens: int = 0
    """Candidate tokens scored (scored steps): every command's tokens, chosen or not."""

    @property
    def success_rate(self) -> float:
        return sum(e.won for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_return(self) -> float:
        return sum(e.total_return for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


@dataclass
class _Slot:
    """One environment's episode in progress."""

    seed: int
    observations: list[str]
    actions: list[str] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    total_return: float = 0.0
    modes: set[str] = field(default_factory=set)
    prompt_computed: int | None = 0
    valid_actions: int | None = 0


def run_rollouts(
    policy: Policy,
    store: ExperienceStore,
    config: RolloutConfig,
    *,
    knowledge: str | None = None,
    tags: EpisodeTags | None = None,
    seeds: Sequence[int] | None = None,
    on_episode: Callable[[FinishedEpisode, RolloutSummary], None] | None = None,
) -> RolloutSummary:
    """Play `seeds` (default: `config.seed + range(config.episodes)`) and store every episode.

    `knowledge`, when given, is spliced into every prompt (its version id
    belongs in `tags`). `on_episode` is called after each stored episode.
    PolicyError when the policy cannot play `config.action_mode`.
    """
    import envs  # noqa: F401  (registers the environments with gymnasium)

    tags = tags or EpisodeTags()
    form = make_form(policy, config.action_mode, config.prompt)
    todo = list(seeds) if seeds is not None else [config.seed + i for i in range(config.episodes)]
    summary = RolloutSummary()
    if not todo:
        return summary
    width = max(1, min(config.batch, len(todo)))
    venv = TextVectorEnv.make(config.env_id, width, split=config.split, **config.env_kwargs)
    slots: list[_Slot | None] = [None] * width
    pending = iter(todo)
    started = time.perf_counter()
    # how the episode was played, for whoever must tell two conditions apart (oel.evaluation)
    sampling = {**asdict(config.sampling), "action_mode": config.action_mode, "env_kwargs": config.env_kwargs}

    def refill(index: int) -> None:
        seed = next(pending, None)
        if seed is None:
            slots[index] = None
            return
        observation, _info = venv.reset_at(index, seed=seed)
        slots[index] = _Slot(seed=seed, observations=[observation])

    for index in range(width):
        refill(index)
    try:
        while venv.live:
            live = venv.live
            histories = [(slots[i].observations, slots[i].actions) for i in live]
            admissible = [venv.infos[i].get("admissible_commands") for i in live]
            decisions = form.act(histories, admissible, knowledge, config.sampling)
            summary.policy_calls += 1
            actions = {i: d.action for i, d in zip(live, decisions, strict=True)}
            observations, rewards, terminated, truncated, infos = venv.step(actions)
            finished: list[tuple[int, dict, list[StepRecord], dict]] = []
            for i, decision, commands in zip(live, decisions, admissible, strict=True):
                slot = slots[i]
                if slot.valid_actions is not None and commands:
                    slot.valid_actions += decision.action in commands
                else:
                    slot.valid_actions = None
                slot.records.append(
                    StepRecord(
                        index=len(slot.actions),
                        state=decision.state,
                        prompt=decision.prompt,
                        completion_text=decision.completion_text,
                        action=decision.action,
                        observation=observations[i],
                        reward=rewards[i],
                        prompt_ids=decision.prompt_ids,
                        completion_ids=decision.completion_ids,
                        logprobs=decision.logprobs,
                        latency_s=decision.latency_s,
                        candidates=decision.candidates,
                    )  # fmt: skip
                )
                slot.actions.append(decision.action)
                slot.observations.append(observations[i])
                slot.total_return += rewards[i]
                slot.modes.add(decision.mode)
                if slot.prompt_computed is not None and decision.prompt_computed is not None:
                    slot.prompt_computed += decision.prompt_computed
                else:
                    slot.prompt_computed = None
                summary.env_steps += 1
                summary.generated_tokens += len(decision.completion_ids or ())
                summary.prompt_tokens += len(decision.prompt_ids or ())
                summary.prompt_computed += decision.prompt_computed or 0
                if decision.candidates is not None:
                    summary.scored_tokens += sum(len(ids) for ids in decision.candidates.ids)
                if terminated[i] or truncated[i]:
                    info = infos[i]
                    played = (
                        "text"
                        if form.mode == "text"
                        else "scored"
                        if slot.modes == {"scored"}
                        else "text-fallback"
                    )
                    header = {
                        "env_id": config.env_id,
                        "task_id": str(info.get("task_id", "")),
                        "seed": slot.seed,
                        "split": config.split,
                        "policy": policy.name,
                        "sampling": sampling,
                        "action_mode": played,
                        **asdict(tags),
                    }
                    result = {
                        "total_return": slot.total_return,
                        "won": bool(info.get("won", False)),
                        "lost": bool(info.get("lost", False)),
                        "feedback": str(info.get("feedback", "")),
                        "prompt_computed": slot.prompt_computed,
                        "valid_actions": slot.valid_actions,
                    }
                    finished.append((i, header, slot.records, result))
            if finished:
                ids = store.write_episodes([(h, r, res) for _i, h, r, res in finished])
                for episode_id, (i, _header, records, result) in zip(ids, finished, strict=True):
                    slot = slots[i]
                    done = FinishedEpisode(
                        episode_id=episode_id,
                        seed=slot.seed,
                        won=result["won"],
                        total_return=result["total_return"],
                        steps=len(records),
                        generated_tokens=sum(len(r.completion_ids or ()) for r in records),
                    )
                    summary.episodes.append(done)
                    summary.seconds = time.perf_counter() - started
                    if on_episode is not None:
                        on_episode(done, summary)
                    refill(i)
    finally:
        venv.close()
    summary.seconds = time.perf_counter() - started
    return summary
