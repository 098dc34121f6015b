"""RL on environment rewards, text mode: GRPO, or GMPO's geometric-mean variant.

One sampled batch per step, used for `updates` optimizer steps:

1. groups: `groups` tasks with `group_size` episodes each from one seed,
   played by the live student without knowledge (`source = "rollouts"`), or
   the round's own collected groups (`source = "round"`); see `distill.groups`;
2. each episode's return is its reward; advantages are normalised within its
   group; groups whose rewards are all equal are skipped, and of the rest the
   `keep_top` fraction with the largest spread trains (RAGEN's filter);
3. the rows are every turn of every kept episode, with the exact prompt and
   completion token ids and the behaviour log-probs read back from the store;
4. loss = GRPO's clipped token loss averaged over all tokens of the batch
   (or GMPO's geometric mean of token ratios per episode), plus kl_beta times
   the k3 KL to the reference (the frozen starting checkpoint);
5. the job shell takes `updates` AdamW steps on the batch.

Choices worth knowing, candidly:

- An episode of several turns is one trajectory with one reward: every token
  of every turn gets the episode's advantage, and GMPO's "sequence" is the
  whole episode (the job shell never splits one across micro-batches).
- With the default `updates = 1` on fresh rollouts the ratio is 1 up to
  float noise and the clip never binds: this is really REINFORCE with a
  group baseline. The clip matters with `updates > 1` (GRPO's mu) or with
  the round's groups reused over several steps.
- The sampler uses the deployed settings (T, top-p, top-k) while log-probs
  are over the full vocabulary at T (`agent.policy`'s definition), so the
  gradient ignores the truncation; at top-p 0.8 the bias is small and the
  trainer never needs the sampler's masks.
- Rewards are raw episode returns; zero-variance groups are dropped rather
  than resampled (DAPO resamples; on 2 CPU cores that doubles the cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from agent.rollout import RolloutConfig
from distill import groups as grouping
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, JobConfig, MethodBase
from distill.losses import logprobs_at, teacher_logprobs_at
from distill.rl_losses import gmpo_loss, grpo_token_loss, k3_kl
from distill.scoring import pack, response_hidden, response_logits

OBJECTIVES = ("grpo", "gmpo")
DEFAULT_CLIP = {"grpo": (0.2, 0.28), "gmpo": (0.4, 0.4)}
"""(eps_low, eps_high) when the config leaves them unset: DAPO's clip-higher; GMPO's log-space 0.4."""


@dataclass
class Config:
    """RL's own settings."""

    env_id: str = "oel/FrozenLake-v0"
    """Environment the student plays (source rollouts) or whose round episodes form the groups."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra `gymnasium.make` keyword arguments for that environment (size, holes, max_steps, ...)."""
    source: str = "rollouts"
    """Where groups come from: rollouts (the live student plays them) or round (the round's collection)."""
    group_size: int = 4
    """G, episodes per task seed in a played group (source rollouts)."""
    groups: int = 2
    """Groups (tasks) per step."""
    keep_top: float = 1.0
    """Of the informative groups, the fraction with the largest reward spread that trains (RAGEN: 0.25)."""
    baseline: str = "group"
    """group (GRPO: an action gets its episode's advantage), state (vs the group's episodes reaching its
    state) or outcomes (scored: Q(s, a) minus the mean Q of s over the run's every round; distill.groups)."""
    objective: str = "grpo"
    """grpo (clipped token ratio, token-level mean) or gmpo (geometric mean of token ratios)."""
    clip_low: float | None = None
    """Lower clip epsilon (ratio for grpo, log-ratio for gmpo); None: 0.2 for grpo, 0.4 for gmpo."""
    clip_high: float | None = None
    """Upper clip epsilon; None: 0.28 for grpo (clip-higher), 0.4 for gmpo."""
    kl_beta: float = 0.0
    """Weight of the k3 KL to the reference (the starting checkpoint); 0 = off."""
    center: float = 0.0
    """Scored mode: fraction of each command's batch-mean push removed from every state's push; 0 = off."""
    updates: int = 1
    """Optimizer steps per sampled batch (GRPO's mu; above 1 the clipped ratio starts to matter)."""

    def __post_init__(self) -> None:
        if self.source not in grouping.SOURCES:
            raise ConsolidationError(
                f"unknown source {self.source!r}; choose one of {', '.join(grouping.SOURCES)}"
            )
        if self.baseline not in grouping.BASELINES:
            raise ConsolidationError(
                f"unknown baseline {self.baseline!r}; choose one of {', '.join(grouping.BASELINES)}"
            )
        if self.objective not in OBJECTIVES:
            raise ConsolidationError(
                f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}"
            )
        if self.group_size < 2:
            raise ConsolidationError(
                f"group_size must be >= 2 (advantages compare episodes), got {self.group_size}"
            )
        if self.groups < 1 or self.updates < 1:
            raise ConsolidationError(f"groups and updates must be >= 1, got {self.groups}, {self.updates}")
        if not 0 < self.keep_top <= 1 or self.kl_beta < 0 or not 0 <= self.center <= 1:
            raise ConsolidationError(
                f"need 0 < keep_top <= 1, kl_beta >= 0 and 0 <= center <= 1, got {self.keep_top}, "
                f"{self.kl_beta}, {self.center}"
            )
        if self.center > 0 and self.objective != "grpo":
            raise ConsolidationError("center needs objective grpo (a per-action push), not gmpo")
        for name in ("clip_low", "clip_high"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConsolidationError(f"{name} must be > 0, got {getattr(self, name)}")

    def clip(self) -> tuple[float, float]:
        """(eps_low, eps_high), defaults filled in per objective."""
        low, high = DEFAULT_CLIP[self.objective]
        return (
            self.clip_low if self.clip_low is not None else low,
            self.clip_high if self.clip_high is not None else high,
        )


@dataclass
class TurnRow:
    """One training row: a turn of an episode, with its behaviour log-probs and the episode's advantage."""

    turn: grouping.Turn
    advantage: float
    rl: bool
    """Whether the RL term trains on it (its group was kept); opcd+rl also feeds it to OPCD otherwise."""

    @property
    def state(self) -> str:
        return self.turn.state

    @property
    def response_ids(self) -> list[int]:
        return self.turn.completion_ids


def sample_groups(job: ConsolidationJob, config: Config, step: int, pool: list | None) -> tuple[list, dict]:
    """Step `step`'s groups and facts about where they came from (played or reused)."""
    cfg = job.config
    if config.source == "round":
        return grouping.pick_round_groups(pool, config.groups, step, cfg.seed), {"reused_episodes": 0}
    rollout = RolloutConfig(
        env_id=config.env_id, split="train", batch=config.groups * config.group_size,
        env_kwargs=dict(config.env_kwargs), sampling=job.sampling(step), action_mode=cfg.action_mode,
    )  # fmt: skip
    played, reused = grouping.play_groups(
        job.store, model=job.student, tokenizer=job.tokenizer, run_id=job.run_id,
        name=grouping.policy_name(job.job["consolidation_id"], step),
        seeds=grouping.task_seeds(cfg.seed, config.groups, step), group_size=config.group_size,
        rollout=rollout,
    )  # fmt: skip
    return played, {"reused_episodes": reused}


def turn_batch(groups: list[list[grouping.PlayedEpisode]], selection: grouping.Selection, baseline: str,
               all_episodes: bool, info: dict) -> Batch:  # fmt: skip
    """Rows for every turn of the kept episodes (of all when `all_episodes`), one unit per episode.

    Under the state baseline a turn with advantage 0 has nothing for the RL
    term; it is left out unless `all_episodes` wants it for another term.
    """
    flat = [e for group in groups for e in group]
    advantages = grouping.turn_advantages(groups, selection, baseline)
    rows, units = [], []
    for index, episode in enumerate(flat):
        for turn, adv in zip(episode.turns, advantages[index], strict=True):
            rl = selection.kept[index] and (baseline == "group" or adv != 0)
            if rl or all_episodes:
                rows.append(TurnRow(turn, adv, rl))
                units.append(index)
    rl_rows = [r for r in rows if r.rl]
    totals = {
        "rl_tokens": sum(len(r.turn.completion_ids) for r in rl_rows),
        "rl_episodes": len({u for u, r in zip(units, rows, strict=True) if r.rl}),
        "tokens": sum(len(r.turn.completion_ids) for r in rows),
    }
    info = {
        **info, **grouping.batch_facts(groups, selection),
        "sampled_tokens": sum(len(t.completion_ids) for e in flat for t in e.turns),
    }  # fmt: skip
    return Batch(rows, units=units, totals=totals, info=info)


def rl_loss(
    job: ConsolidationJob, config: Config, rows: list[TurnRow], logits: torch.Tensor, targets: torch.Tensor,
    batch: Batch,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """The RL term of one micro-batch from the student's response logits, pre-scaled to the batch mean."""
    per_token = [len(r.turn.completion_ids) for r in rows]
    device = logits.device
    rl_mask = torch.tensor(
        [r.rl for r, n in zip(rows, per_token, strict=True) for _ in range(n)], device=device
    )
    if not bool(rl_mask.any()):
        return logits.new_zeros(()), {}
    # the ratio's denominator was taken at each episode's own sampling T (a round's collection
    # explores at its own temperature), so the numerator must be too
    temperature = torch.tensor(
        [r.turn.temperature for r, n in zip(rows, per_token, strict=True) for _ in range(n)], device=device
    )[:, None]
    logp = logprobs_at(logits, targets[:, None], temperature).squeeze(-1)[rl_mask]
    old = torch.tensor([lp for r in rows if r.rl for lp in r.turn.logprobs], device=device)
    adv = torch.tensor([r.advantage for r, n in zip(rows, per_token, strict=True) if r.rl for _ in range(n)],
                       device=device)  # fmt: skip
    eps_low, eps_high = config.clip()
    if config.objective == "grpo":
        token_loss, clipped = grpo_token_loss(logp, old, adv, eps_low, eps_high)
        loss = token_loss.sum() / batch.totals["rl_tokens"]
    else:
        episode_ids = [u for r, u, n in zip(rows, _row_units(batch, rows), per_token, strict=True) if r.rl
                       for _ in range(n)]  # fmt: skip
        local = torch.unique(torch.tensor(episode_ids), return_inverse=True)[1].to(device)
        seq_adv = torch.zeros(int(local.max()) + 1, device=device).index_put_((local,), adv)
        mean_loss, clipped = gmpo_loss(logp, old, seq_adv, local, eps_low, eps_high)
        loss = mean_loss * seq_adv.shape[0] / batch.totals["rl_episodes"]
    stats = {
        "rl_loss": float(loss.detach()),
        "clip_fraction": float(clipped.sum()) / batch.totals["rl_tokens"],
    }
    if config.kl_beta > 0:
        kept = [r for r in rows if r.rl]
        prompts, responses = [r.turn.prompt_ids for r in kept], [r.turn.completion_ids for r in kept]
        packed = pack(prompts, responses, job.pad_id, job.device)
        with torch.no_grad():
            ref = teacher_logprobs_at(
                response_hidden(job.teacher, packed), job.teacher.get_output_embeddings(),
                packed.targets[:, None], job.config.temperature, job.config.chunk,
            )  # fmt: skip
        kl_ref = k3_kl(logp, ref.squeeze(-1))
        loss = loss + config.kl_beta * kl_ref.sum() / batch.totals["rl_tokens"]
        stats["kl_ref"] = float(kl_ref.detach().sum()) / batch.totals["rl_tokens"]
    return loss, stats


def _row_units(batch: Batch, rows: list[TurnRow]) -> list[int]:
    """The unit (episode index) of each row of a micro-batch."""
    index = {id(r): u for r, u in zip(batch.rows, batch.units, strict=True)}
    return [index[id(r)] for r in rows]


class Method(MethodBase):
    """GRPO / GMPO in text mode; see the module docstring."""

    def __init__(self, job_config: JobConfig, config: Config) -> None:
        super().__init__(job_config, config)
        if config.center > 0 and job_config.action_mode != "scored":
            raise ConsolidationError("center needs the scored action mode (it centres pushes on candidates)")
        if config.baseline == "outcomes" and job_config.action_mode != "scored":
            raise ConsolidationError("the outcomes baseline needs the scored action mode")
        self.updates = config.updates
        self.pool: list | None = None

    def needs_teacher(self) -> bool:
        return self.config.kl_beta > 0

    def prepare(self, job: ConsolidationJob) -> None:
        if self.config.source == "round":
            self.pool = grouping.round_groups(job.store, job.config.run, job.config.round, self.config.env_id)

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. G episodes per task, played by the live student (or the round's groups)
        groups, info = sample_groups(job, self.config, step, self.pool)
        # ---- 2. group-normalised advantages; equal-reward groups skipped, the top spread kept
        selection = grouping.select(groups, self.config.keep_top)
        # ---- 3. every turn of the kept episodes, with its behaviour log-probs
        return turn_batch(groups, selection, self.config.baseline, all_episodes=False, info=info)

    def loss(self, job: ConsolidationJob, rows: list[TurnRow], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 4. the clipped policy-gradient loss on the student's recomputed log-probs
        packed = pack([r.turn.prompt_ids for r in rows], [r.turn.completion_ids for r in rows], job.pad_id,
                      job.device)  # fmt: skip
        return rl_loss(job, self.config, rows, response_logits(job.student, packed), packed.targets, batch)
