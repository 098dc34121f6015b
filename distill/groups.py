"""GRPO groups: G episodes played from the same task seed, where they come from, and which carry signal.

Two sources, both read back from the store (so tokens, behaviour log-probs
and scored candidate distributions are exactly what was sampled, never
re-tokenized):

- `rollouts`: the live student plays `groups` tasks, `group_size` episodes
  each, without knowledge, through the ordinary batched rollout code. The
  episodes carry the run id but no round and no checkpoint, and the policy
  name `rl:c<consolidation>:s<step>`, so round statistics and watch-mode
  claims never count them; their seeds start at RL_SEED_BASE, far from the
  loop's train seeds. A resumed job finds a step's episodes by that name and
  plays only what is missing: they were sampled by the very weights the
  resumed job has at that step (it replays the same steps on the same data
  from the same snapshot), so they are still on-policy.
- `round`: the round's own collection, played with `[collect] group_size`
  episodes per seed; each step takes `groups` of its groups in the seeded
  order. Reused across steps, the data grows off-policy, which is what the
  clipped importance ratio is for.

Which groups train (`select`): GRPO's advantage is A_i = (r_i - mean r) /
(std r + eps) within a group, so a group whose rewards are all equal has no
signal and is skipped (and counted). Of the rest, RAGEN's filter keeps the
`keep_top` fraction with the largest reward spread (std): with sparse
rewards, a few informative groups are worth more than many nearly-equal
ones, and RAGEN reports PPO collapsing on FrozenLake without the filter.

Which actions get credit (`turn_advantages`): with `baseline = "group"`
every action of an episode carries the episode's advantage, as in GRPO.
With `baseline = "state"` an action is compared only with the group's
episodes that reached the same state: A = (R_i - mean of R over the
episodes that visited s) / (group std + eps). A state every visitor won
(or lost) from gives its actions no push, so only the decisions where the
outcomes diverged train. That is a Monte Carlo state baseline: the group's
episodes share a seed, so their states coincide wherever their paths do.
It was added because, with the group baseline, one update on FrozenLake
shifted every state towards the same move (measured: the greedy policy
flipped between all-down and all-right across rounds).
With `baseline = "outcomes"` (scored mode) the comparison spans the run's
whole experience instead of one group: A(s, a) = Q(s, a) - the mean of Q(s, .)
over the actions ever tried in s, from the outcome table of `distill.credit`
(GiGPO's step-level advantage, with anchor states gathered over every
round). A group whose rewards are all equal still trains there, since a
move known to fall in a hole is bad whatever its episode's reward; a state
where one action was tried, or that the table does not know, gets no push.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from agent.hf_policy import HFPolicy
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from distill.credit import StateOutcomes
from distill.data import batch_indices
from distill.errors import ConsolidationError
from distill.rl_losses import group_advantages
from memory import queries
from memory.records import CandidateDistribution
from memory.replay import owed_seeds
from memory.store import ExperienceStore

RL_SEED_BASE = 1_000_000
"""RL task seeds are RL_SEED_BASE * (1 + seed) + i: far above the loop's train seeds (0, 1, 2, ...)."""
SOURCES = ("rollouts", "round")
BASELINES = ("group", "state", "outcomes")


def policy_name(consolidation_id: int, step: int) -> str:
    """The policy label of one RL step's episodes in the store."""
    return f"rl:c{consolidation_id}:s{step}"


@dataclass
class Turn:
    """One logged policy call: what the student saw, what it produced, and the behaviour log-probs."""

    state: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    candidates: dict | None
    """Scored mode: the stored candidate distribution's JSON (`memory.records.CandidateDistribution`)."""
    temperature: float = 1.0
    """T the behaviour log-probs were taken at (the episode's sampling T; 1 for greedy play)."""


@dataclass
class PlayedEpisode:
    """An episode read back from the store, with its reward and turns."""

    episode_id: int
    seed: int
    reward: float
    won: bool
    turns: list[Turn]


def stored_episodes(store: ExperienceStore, **filters: object) -> list[PlayedEpisode]:
    """The complete episodes matching `memory.queries.steps` filters, oldest first, with their turns."""
    steps = queries.steps(store, **filters)
    episodes: dict[int, PlayedEpisode] = {}
    for row in steps.itertuples(index=False):
        prompt, completion, logprobs = row.prompt_ids, row.completion_ids, row.logprobs
        if not prompt or not completion or logprobs is None or len(logprobs) != len(completion):
            raise ConsolidationError(f"episode {row.episode_id} lacks token ids or log-probs; RL needs both")
        episode = episodes.setdefault(
            row.episode_id,
            PlayedEpisode(
                row.episode_id, int(row.seed), float(row.episode_return or 0.0), bool(row.episode_won), []
            ),
        )
        sampled_t = float((row.sampling or {}).get("temperature") or 0.0)
        episode.turns.append(
            Turn(row.state, prompt, completion, logprobs, row.candidates, sampled_t if sampled_t > 0 else 1.0)
        )
    return list(episodes.values())


def task_seeds(seed: int, groups: int, step: int) -> list[int]:
    """The `groups` task seeds of RL step `step` (from 1)."""
    first = RL_SEED_BASE * (1 + seed) + (step - 1) * groups
    return [first + g for g in range(groups)]


def play_groups(
    store: ExperienceStore,
    *,
    model: object,
    tokenizer: object,
    run_id: int,
    name: str,
    seeds: list[int],
    group_size: int,
    rollout: RolloutConfig,
) -> tuple[list[list[PlayedEpisode]], int]:
    """`group_size` episodes per seed played by `model` under policy `name` (reusing stored ones).

    Return the groups, in seed order, and how many episodes were reused from the store.
    """
    stored = [e.seed for e in stored_episodes(store, run=run_id, policy=name)]
    missing = owed_seeds([s for s in seeds for _ in range(group_size)], stored)
    if missing:
        model.eval()
        policy = HFPolicy.from_model(model, tokenizer, name=name)
        run_rollouts(policy, store, rollout, tags=EpisodeTags(run_id=run_id), seeds=missing)
    by_seed: dict[int, list[PlayedEpisode]] = {s: [] for s in seeds}
    for episode in stored_episodes(store, run=run_id, policy=name):
        if episode.seed in by_seed and len(by_seed[episode.seed]) < group_size:
            by_seed[episode.seed].append(episode)
    reused = len(seeds) * group_size - len(missing)
    return [by_seed[s] for s in seeds], reused


def round_groups(
    store: ExperienceStore, run: str, round_index: int, env_id: str
) -> list[list[PlayedEpisode]]:
    """The round's train episodes of `env_id` grouped by seed; only seeds with two or more episodes."""
    episodes = stored_episodes(store, run=run, round=round_index, split="train", env=env_id)
    by_seed: dict[int, list[PlayedEpisode]] = {}
    for episode in episodes:
        by_seed.setdefault(episode.seed, []).append(episode)
    groups = [g for _seed, g in sorted(by_seed.items()) if len(g) >= 2]
    if not groups:
        raise ConsolidationError(
            f"round {round_index} of run {run!r} has no GRPO groups (two or more {env_id} train episodes "
            'from one seed); collect with [collect] group_size >= 2, or use source = "rollouts"'
        )
    return groups


def pick_round_groups(
    pool: list[list[PlayedEpisode]], groups: int, step: int, seed: int
) -> list[list[PlayedEpisode]]:
    """Step `step`'s (from 1) `groups` groups of the round's pool, in the seeded epoch order."""
    return [pool[i] for i in batch_indices(len(pool), min(groups, len(pool)), step - 1, seed)]


@dataclass
class Selection:
    """Which episodes of a batch of groups train, and with which advantage."""

    advantages: list[float]
    """Per episode (groups flattened in order), its group-normalised advantage."""
    kept: list[bool]
    """Per episode, whether its group trains."""
    skipped: int
    """Groups with equal rewards (no signal)."""
    filtered: int
    """Informative groups dropped by the keep_top filter."""


def select(groups: list[list[PlayedEpisode]], keep_top: float = 1.0) -> Selection:
    """Group-normalised advantages, and the groups that train: informative ones, the top `keep_top` by spread.

    Groups may differ in size (a round's seeds); each is normalised on its own.
    """
    advantages: list[float] = []
    kept: list[bool] = []
    spreads: list[float] = []
    for group in groups:
        if len(group) < 2:
            raise ConsolidationError(f"a GRPO group needs two or more episodes, got {len(group)}")
        rewards = torch.tensor([[e.reward for e in group]])
        adv, informative = group_advantages(rewards)
        advantages += adv[0].tolist()
        spreads.append(float(rewards.std(unbiased=False)) if bool(informative[0]) else 0.0)
    informative_ids = [g for g, s in enumerate(spreads) if s > 0]
    n_keep = math.ceil(keep_top * len(informative_ids)) if informative_ids else 0
    by_spread = sorted(informative_ids, key=lambda g: (-spreads[g], g))[:n_keep]
    chosen = set(by_spread)
    for g, group in enumerate(groups):
        kept += [g in chosen] * len(group)
    return Selection(
        advantages=advantages, kept=kept, skipped=len(groups) - len(informative_ids),
        filtered=len(informative_ids) - n_keep,
    )  # fmt: skip


def batch_facts(groups: list[list[PlayedEpisode]], selection: Selection) -> dict[str, float]:
    """What a step logs about its groups: rewards, wins, and how many groups were skipped, filtered, kept."""
    flat = [e for group in groups for e in group]
    return {
        "reward_mean": sum(e.reward for e in flat) / len(flat),
        "won_rate": sum(e.won for e in flat) / len(flat),
        "groups": len(groups),
        "skipped_groups": selection.skipped,
        "filtered_groups": selection.filtered,
        "kept_groups": len(groups) - selection.skipped - selection.filtered,
        "episodes": len(flat),
    }


def turn_advantages(
    groups: list[list[PlayedEpisode]], selection: Selection, baseline: str, eps: float = 1e-6,
    outcomes: dict[str, StateOutcomes] | None = None,
) -> list[list[float]]:  # fmt: skip
    """Per episode (groups flattened in order), each turn's advantage under `baseline` (see the docstring);
    `outcomes` is the run's outcome table, which the outcomes baseline needs."""
    if baseline not in BASELINES:
        raise ConsolidationError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    flat = [e for group in groups for e in group]
    if baseline == "group":
        return [[selection.advantages[i]] * len(e.turns) for i, e in enumerate(flat)]
    if baseline == "outcomes":
        if outcomes is None:
            raise ConsolidationError("the outcomes baseline needs the run's outcome table (scored mode)")
        return [[outcome_advantage(outcomes, turn) for turn in e.turns] for e in flat]
    out: list[list[float]] = []
    for group in groups:
        rewards = torch.tensor([e.reward for e in group], dtype=torch.float64)
        std = float(rewards.std(unbiased=False))
        visitors: dict[str, set[int]] = {}
        for i, episode in enumerate(group):
            for turn in episode.turns:
                visitors.setdefault(turn.state, set()).add(i)
        for episode in group:
            if std == 0:
                out.append([0.0] * len(episode.turns))
                continue
            row = []
            for turn in episode.turns:
                seen = visitors[turn.state]
                row.append((episode.reward - sum(group[j].reward for j in seen) / len(seen)) / (std + eps))
            out.append(row)
    return out


def outcome_advantage(outcomes: dict[str, StateOutcomes], turn: Turn) -> float:
    """Q(s, a) of the turn's scored action minus the mean Q of the actions tried in s; 0 when unknown."""
    known = outcomes.get(turn.state)
    if turn.candidates is None or known is None:
        return 0.0
    action = CandidateDistribution.played(turn.candidates)
    if action not in known.actions:
        return 0.0
    values = [o.q for o in known.actions.values()]
    return known.actions[action].q - sum(values) / len(values)
