"""The policy-gradient machinery GRPO and OPCD+RL share: settings, groups to rows, and the RL term.

Both methods (`distill.methods.grpo`, `distill.methods.opcd_rl`) sample the
same groups and train the same clipped-ratio term; OPCD+RL adds the teacher
KL to it. So the pieces live here once, in both action modes side by side,
and each method module reads as its algorithm (docs/architecture.md,
"Consolidation"):

- `Config`, the RL settings, and `GroupMethod`, the base that checks them
  against the action mode and reads what a job needs before training (the
  round's groups, the outcome table for step-level credit);
- `sample_groups`: a step's groups, played by the live student or taken from
  the round (`distill.groups` holds where groups come from, their
  advantages and RAGEN's filter);
- `turn_batch` (text: every turn's reply tokens) and `action_batch` (scored:
  every scored step's candidates), the rows of the kept episodes;
- `text_rl_loss` and `scored_rl_loss`: GRPO's clipped ratio (or GMPO's
  geometric mean per episode, or the centred push of scored mode) plus
  kl_beta times a KL to the reference, pre-scaled to the batch mean.

The two RL terms differ only in what a ratio is taken of (a reply token, a
chosen command) and in their reference KL (k3 per token, exact over the
candidates); the ratio loss itself (`ratio_loss`) is one function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from agent.rollout import RolloutConfig
from distill import credit
from distill import groups as grouping
from distill.candidates import ScoredState, candidate_log_pi, exact_kl
from distill.data import replay_steps
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.job_config import JobConfig
from distill.losses import logprobs_at, teacher_logprobs_at
from distill.rl_losses import gmpo_loss, grpo_token_loss, k3_kl
from distill.text_batches import pack, response_hidden

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
        for name, allowed in (("source", grouping.SOURCES), ("baseline", grouping.BASELINES),
                              ("objective", OBJECTIVES)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ConsolidationError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
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


class GroupMethod(MethodBase):
    """What every group-sampling method shares: its settings checked against the action mode, `updates`
    optimizer steps per batch, and the round's groups and outcome table read before training."""

    outcomes: dict[str, credit.StateOutcomes] | None = None

    def __init__(self, job_config: JobConfig, config: Config) -> None:
        super().__init__(job_config, config)
        if config.center > 0 and job_config.action_mode != "scored":
            raise ConsolidationError("center needs the scored action mode (it centres pushes on candidates)")
        if config.baseline == "outcomes" and job_config.action_mode != "scored":
            raise ConsolidationError("the outcomes baseline needs the scored action mode")
        self.updates = config.updates
        self.pool: list | None = None

    def needs_teacher(self) -> bool:
        return self.uses_knowledge or self.config.kl_beta > 0

    def prepare(self, job: ConsolidationJob) -> None:
        cfg = job.config
        if self.config.source == "round":
            self.pool = grouping.round_groups(job.store, cfg.run, cfg.round, self.config.env_id)
        if self.config.baseline == "outcomes":  # step-level credit over the run's every round
            steps = replay_steps(job.store, cfg.run, cfg.round, cfg.split, replay=-1)
            self.outcomes = credit.outcome_table(steps[steps["candidates"].notna()])


def sample_groups(job: ConsolidationJob, config: Config, step: int, pool: list | None) -> tuple[list, dict]:
    """Step `step`'s groups and facts about where they came from (played or reused)."""
    if config.source == "round":
        return grouping.pick_round_groups(pool, config.groups, step, job.config.seed), {"reused_episodes": 0}
    rollout = RolloutConfig(
        env_id=config.env_id, split="train", batch=config.groups * config.group_size,
        env_kwargs=dict(config.env_kwargs), sampling=job.sampling(step), action_mode=job.config.action_mode,
    )  # fmt: skip
    played, reused = grouping.play_groups(
        job.store, model=job.student, tokenizer=job.tokenizer, run_id=job.run_id,
        name=grouping.policy_name(job.record.consolidation_id, step),
        seeds=grouping.task_seeds(job.config.seed, config.groups, step), group_size=config.group_size,
        rollout=rollout,
    )  # fmt: skip
    return played, {"reused_episodes": reused}


# ---------------------------------------------------------------------- rows: text and scored


@dataclass
class TurnRow:
    """Text mode: a turn of an episode, with its behaviour log-probs and its advantage."""

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


@dataclass
class ActionRow:
    """Scored mode: a scored step of an episode, with its advantage."""

    step: ScoredState
    advantage: float
    rl: bool
    """Whether the RL term trains on it (its group was kept)."""
    push: list[float] | None = None
    """With centring: the centred push on each candidate's log pi (see `center_pushes`)."""

    @property
    def state(self) -> str:
        return self.step.state


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


def action_batch(groups: list[list[grouping.PlayedEpisode]], selection: grouping.Selection, baseline: str,
                 all_episodes: bool, info: dict, outcomes: dict[str, credit.StateOutcomes] | None = None,
                 center: float = 0.0) -> Batch:  # fmt: skip
    """Rows for every scored step of the kept episodes (of all when `all_episodes`), one unit each episode.

    Under the state and outcomes baselines a step with advantage 0 has nothing
    for the RL term; it is left out unless `all_episodes` wants it for another
    term. The outcomes baseline keeps every episode (its credit is not the group's).
    Text steps (a scored episode's fallback) are skipped and counted. With `center` > 0 the RL rows'
    pushes are centred over the batch (`center_pushes`).
    """
    flat = [e for group in groups for e in group]
    advantages = grouping.turn_advantages(groups, selection, baseline, outcomes=outcomes)
    rows, units, text_steps = [], [], 0
    for index, episode in enumerate(flat):
        kept = selection.kept[index] or baseline == "outcomes"
        for turn, adv in zip(episode.turns, advantages[index], strict=True):
            rl = kept and (baseline == "group" or adv != 0)
            if not (rl or all_episodes):
                continue
            if turn.candidates is None:
                text_steps += 1
                continue
            step = ScoredState.from_step(turn.state, turn.prompt_ids, turn.candidates)
            rows.append(ActionRow(step, adv, rl))
            units.append(index)
    rl_units = {u for u, r in zip(units, rows, strict=True) if r.rl}
    totals = {"rl_actions": sum(r.rl for r in rows), "rl_episodes": len(rl_units), "states": len(rows),
              "tokens": sum(len(r.step.candidate_ids[r.step.chosen]) for r in rows)}  # fmt: skip
    info = {
        **info,
        **grouping.batch_facts(groups, selection),
        "actions": len(rows),
        "text_steps_skipped": text_steps,
    }
    if center > 0:
        center_pushes(rows, center)
    return Batch(rows, units=units, totals=totals, info=info)


def center_pushes(rows: list[ActionRow], center: float) -> None:
    """Give every RL row its push minus `center` times its commands' mean push over the batch's RL rows.

    The policy gradient pushes state s's candidate logits by g(s) = A (onehot(chosen) - pi_old(. | s)).
    On FrozenLake one update moved every state towards the same move (measured: the greedy policy
    flipped between all-down and all-right from round to round): a command's push averaged over the
    batch's states is a state-independent shift, the easiest direction for the weights to take. With
    `center = c` each state's push becomes g(s) - c * (the batch mean of g per command, over the states
    offering it), so with c = 1 only what differs between states trains.
    """
    rl_rows = [r for r in rows if r.rl]
    pushes = []
    totals: dict[str, list[float]] = {}
    for row in rl_rows:
        pi = torch.tensor(row.step.logprobs, dtype=torch.float64).exp()
        push = (torch.nn.functional.one_hot(torch.tensor(row.step.chosen), len(pi)) - pi) * row.advantage
        pushes.append(push.tolist())
        for command, p in zip(row.step.commands, pushes[-1], strict=True):
            totals.setdefault(command, []).append(p)
    means = {c: sum(v) / len(v) for c, v in totals.items()}
    for row, push in zip(rl_rows, pushes, strict=True):
        row.push = [p - center * means[c] for c, p in zip(row.step.commands, push, strict=True)]


# ---------------------------------------------------------------------- the RL term


def row_units(batch: Batch, rows: list[Any]) -> list[int]:
    """The unit (episode index) of each row of a micro-batch."""
    index = {id(r): u for r, u in zip(batch.rows, batch.units, strict=True)}
    return [index[id(r)] for r in rows]


def ratio_loss(
    config: Config,
    new: torch.Tensor,
    old: torch.Tensor,
    adv: torch.Tensor,
    units: list[int] | None,
    batch: Batch,
    per: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's clipped-ratio loss averaged over the batch's `per` (rl_tokens or rl_actions), or GMPO's
    geometric mean per episode averaged over its episodes; and which ratios were clipped.

    `new`, `old` and `adv` are per ratio (a reply token, a chosen command); `units` its episode (GMPO only).
    """
    eps_low, eps_high = config.clip()
    if config.objective == "grpo":
        loss, clipped = grpo_token_loss(new, old, adv, eps_low, eps_high)
        return loss.sum() / batch.totals[per], clipped
    local = torch.unique(torch.tensor(units), return_inverse=True)[1].to(new.device)
    seq_adv = torch.zeros(int(local.max()) + 1, device=new.device).index_put_((local,), adv)
    mean_loss, clipped = gmpo_loss(new, old, seq_adv, local, eps_low, eps_high)
    return mean_loss * seq_adv.shape[0] / batch.totals["rl_episodes"], clipped


def text_rl_loss(
    job: ConsolidationJob, config: Config, rows: list[TurnRow], logits: torch.Tensor, targets: torch.Tensor,
    batch: Batch,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """The RL term of one micro-batch from the student's response logits, pre-scaled to the batch mean."""
    per_token = [len(r.turn.completion_ids) for r in rows]
    device = logits.device

    def per_token_of(values: list) -> list:
        return [v for v, n in zip(values, per_token, strict=True) for _ in range(n)]

    rl_mask = torch.tensor(per_token_of([r.rl for r in rows]), device=device)
    if not bool(rl_mask.any()):
        return logits.new_zeros(()), {}
    # the ratio's denominator was taken at each episode's own sampling T (a round's collection
    # explores at its own temperature), so the numerator must be too
    temperature = torch.tensor(per_token_of([r.turn.temperature for r in rows]), device=device)[:, None]
    logp = logprobs_at(logits, targets[:, None], temperature).squeeze(-1)[rl_mask]
    old = torch.tensor([lp for r in rows if r.rl for lp in r.turn.logprobs], device=device)
    kept = [r for r in rows if r.rl]
    adv = torch.tensor(per_token_of([r.advantage for r in rows]), device=device)[rl_mask]
    units = None
    if config.objective == "gmpo":  # GMPO's mean is per episode: each ratio's episode
        units = [u for u, r, n in zip(row_units(batch, rows), rows, per_token, strict=True) if r.rl
                 for _ in range(n)]  # fmt: skip
    loss, clipped = ratio_loss(config, logp, old, adv, units, batch, "rl_tokens")
    stats = {
        "rl_loss": float(loss.detach()),
        "clip_fraction": float(clipped.sum()) / batch.totals["rl_tokens"],
    }
    if config.kl_beta > 0:  # k3 per token against the reference's log-probs of the same tokens
        packed = pack([r.turn.prompt_ids for r in kept], [r.turn.completion_ids for r in kept], job.pad_id,
                      job.device)  # fmt: skip
        with torch.no_grad():
            ref = teacher_logprobs_at(
                response_hidden(job.teacher, packed), job.teacher.get_output_embeddings(),
                packed.targets[:, None], job.config.temperature, job.config.chunk,
            )  # fmt: skip
        kl_ref = k3_kl(logp, ref.squeeze(-1))
        loss = loss + config.kl_beta * kl_ref.sum() / batch.totals["rl_tokens"]
        stats["kl_ref"] = float(kl_ref.detach().sum()) / batch.totals["rl_tokens"]
    return loss, stats


def scored_rl_loss(job: ConsolidationJob, config: Config, rows: list[ActionRow], log_pi: list[torch.Tensor],
                   batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """The RL term of one micro-batch from the student's candidate log-probs, pre-scaled to the batch mean.

    With `center` the loss is the surrogate -sum_s sum_a g'(s)_a log pi(a | s) times the detached ratio,
    whose gradient is the centred push (`center_pushes`); it has no clip, so it is meant for one update
    per fresh batch, as the loop's rounds use it.
    """
    picked = [i for i, r in enumerate(rows) if r.rl]
    if not picked:
        return torch.zeros((), device=job.device), {}
    new = torch.stack([log_pi[i][rows[i].step.chosen] for i in picked])
    old = torch.tensor([rows[i].step.logprobs[rows[i].step.chosen] for i in picked], device=new.device)
    adv = torch.tensor([rows[i].advantage for i in picked], device=new.device)
    if config.center > 0:
        ratio = torch.exp(new - old).detach()
        pushed = torch.stack([(torch.tensor(rows[i].push, dtype=log_pi[i].dtype, device=new.device)
                               * log_pi[i]).sum() for i in picked])  # fmt: skip
        loss = -(ratio * pushed).sum() / batch.totals["rl_actions"]
        clipped = torch.zeros(len(picked), dtype=torch.bool)
    else:
        units = row_units(batch, [rows[i] for i in picked]) if config.objective == "gmpo" else None
        loss, clipped = ratio_loss(config, new, old, adv, units, batch, "rl_actions")
    stats = {
        "rl_loss": float(loss.detach()),
        "clip_fraction": float(clipped.sum()) / batch.totals["rl_actions"],
    }
    if config.kl_beta > 0:  # the exact KL over the candidates to the reference
        with torch.no_grad():
            ref = candidate_log_pi(
                job.teacher, [rows[i].step.prompt_ids for i in picked],
                [rows[i].step.candidate_ids for i in picked], [rows[i].step.temperature for i in picked],
                job.pad_id,
            )  # fmt: skip
        kl = torch.stack([exact_kl(log_pi[i], r) for i, r in zip(picked, ref, strict=True)])
        loss = loss + config.kl_beta * kl.sum() / batch.totals["rl_actions"]
        stats["kl_ref"] = float(kl.detach().sum()) / batch.totals["rl_actions"]
    return loss, stats
