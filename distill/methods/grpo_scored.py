"""RL on environment rewards, scored mode: GRPO or GMPO on the chosen command's probability.

In the scored action mode (`agent.forms.ScoredForm`) an action is a sample
of pi(a | s) = softmax(score(a) / T) over the admissible commands. The
policy-gradient loss therefore works on log pi(chosen | s), recomputed for
every candidate with gradient (`distill.candidates`), instead of on reply
tokens. The steps, as in `distill.methods.grpo`:

1. groups: `groups` tasks with `group_size` episodes each from one seed,
   played in scored mode by the live student at the job's temperature (the
   exploration knob), or the round's own collected groups; `distill.groups`;
2. group-normalised advantages; equal-reward groups skipped; the
   `keep_top` fraction with the largest spread trains (RAGEN's filter);
   with `baseline = "state"` each action is compared only with the group's
   episodes that reached its state (`distill.groups.turn_advantages`);
   with `baseline = "outcomes"`, step-level credit: each action's advantage
   is its Q(s, a) minus the mean Q of its state in the outcome table of the
   run's every round (`distill.credit`, built once per job), and every
   group trains, the equal-reward ones included;
3. rows: every scored step of the kept episodes, with the candidates'
   token ids and log pi_old as sampled (text steps of a fallback are skipped
   and counted);
4. loss = GRPO's clipped ratio exp(log pi - log pi_old) x advantage, averaged
   over the batch's actions (or GMPO's geometric mean per episode), plus
   kl_beta times the exact KL over the candidates to the reference (the
   frozen starting checkpoint);
5. the job shell takes `updates` AdamW steps on the batch.

With T the same in collection and training, a fresh batch's ratio is 1: the
behaviour log-probs are those of the distribution actually sampled.

Centring (`center`, off by default). The policy gradient pushes state s's
candidate logits by g(s) = A (onehot(chosen) - pi_old(. | s)). On FrozenLake
one update moved every state towards the same move (measured: the greedy
policy flipped between all-down and all-right from round to round): a
command's push, averaged over the batch's states, is a state-independent
shift, the easiest direction for the weights to take. With `center = c`
each state's push becomes g(s) - c * mean over the batch's states of g
(per command, over the states offering it), so with c = 1 only what
differs between states trains. The loss is then the surrogate
-sum_s sum_a g'(s)_a log pi(a | s) times the detached ratio, whose
gradient is that push: it has no clip, so it is meant for one update per
fresh batch, as the loop's rounds use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill import credit
from distill import groups as grouping
from distill.candidates import ScoredState, candidate_log_pi, exact_kl
from distill.data import replay_steps
from distill.job import Batch, ConsolidationJob
from distill.methods import grpo
from distill.rl_losses import gmpo_loss, grpo_token_loss

Config = grpo.Config


@dataclass
class ActionRow:
    """One training row: a scored step of an episode, with the episode's advantage."""

    step: ScoredState
    advantage: float
    rl: bool
    """Whether the RL term trains on it (its group was kept)."""
    push: list[float] | None = None
    """With centring: the centred push on each candidate's log pi (see the module docstring)."""

    @property
    def state(self) -> str:
        return self.step.state


def action_batch(groups: list[list[grouping.PlayedEpisode]], selection: grouping.Selection, baseline: str,
                 all_episodes: bool, info: dict,
                 outcomes: dict[str, credit.StateOutcomes] | None = None) -> Batch:  # fmt: skip
    """Rows for every scored step of the kept episodes (of all when `all_episodes`), one unit each episode.

    Under the state and outcomes baselines a step with advantage 0 has nothing
    for the RL term; it is left out unless `all_episodes` wants it for another
    term. The outcomes baseline keeps every episode (its credit is not the group's).
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
    return Batch(rows, units=units, totals=totals, info=info)


def center_pushes(rows: list[ActionRow], center: float) -> None:
    """Give every RL row its push minus `center` times its commands' mean push over the batch's RL rows."""
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


def rl_loss(job: ConsolidationJob, config: Config, rows: list[ActionRow], log_pi: list[torch.Tensor],
            batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """The RL term of one micro-batch from the student's candidate log-probs, pre-scaled to the batch mean."""
    picked = [i for i, r in enumerate(rows) if r.rl]
    if not picked:
        return torch.zeros((), device=job.device), {}
    new = torch.stack([log_pi[i][rows[i].step.chosen] for i in picked])
    old = torch.tensor([rows[i].step.logprobs[rows[i].step.chosen] for i in picked], device=new.device)
    adv = torch.tensor([rows[i].advantage for i in picked], device=new.device)
    eps_low, eps_high = config.clip()
    if config.center > 0:
        ratio = torch.exp(new - old).detach()
        pushed = torch.stack([(torch.tensor(rows[i].push, dtype=log_pi[i].dtype, device=new.device)
                               * log_pi[i]).sum() for i in picked])  # fmt: skip
        loss = -(ratio * pushed).sum() / batch.totals["rl_actions"]
        clipped = torch.zeros(len(picked), dtype=torch.bool)
    elif config.objective == "grpo":
        action_loss, clipped = grpo_token_loss(new, old, adv, eps_low, eps_high)
        loss = action_loss.sum() / batch.totals["rl_actions"]
    else:
        units = grpo._row_units(batch, [rows[i] for i in picked])
        local = torch.unique(torch.tensor(units), return_inverse=True)[1].to(new.device)
        seq_adv = torch.zeros(int(local.max()) + 1, device=new.device).index_put_((local,), adv)
        mean_loss, clipped = gmpo_loss(new, old, seq_adv, local, eps_low, eps_high)
        loss = mean_loss * seq_adv.shape[0] / batch.totals["rl_episodes"]
    stats = {
        "rl_loss": float(loss.detach()),
        "clip_fraction": float(clipped.sum()) / batch.totals["rl_actions"],
    }
    if config.kl_beta > 0:
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


def student_log_pi(job: ConsolidationJob, rows: list[ActionRow]) -> list[torch.Tensor]:
    """The live student's log pi over each row's candidates, on the exact prompts it scored, with gradient."""
    return job.candidate_log_pi([r.step for r in rows], [r.step.temperature for r in rows])


class Method(grpo.Method):
    """GRPO / GMPO in the scored action mode; see the module docstring."""

    outcomes: dict[str, credit.StateOutcomes] | None = None

    def prepare(self, job: ConsolidationJob) -> None:
        super().prepare(job)
        if self.config.baseline == "outcomes":
            cfg = job.config
            steps = replay_steps(job.store, cfg.run, cfg.round, cfg.split, replay=-1)
            self.outcomes = credit.outcome_table(steps[steps["candidates"].notna()])

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. G scored episodes per task (or the round's groups); 2. advantages, filter
        groups, info = grpo.sample_groups(job, self.config, step, self.pool)
        selection = grouping.select(groups, self.config.keep_top)
        # ---- 3. every scored step of the kept episodes (their pushes centred over the batch, if asked)
        batch = action_batch(groups, selection, self.config.baseline, all_episodes=False, info=info,
                             outcomes=self.outcomes)  # fmt: skip
        if self.config.center > 0:
            center_pushes(batch.rows, self.config.center)
        return batch

    def loss(self, job: ConsolidationJob, rows: list[ActionRow], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 4. the clipped policy-gradient loss on log pi(chosen), recomputed with gradient
        return rl_loss(job, self.config, rows, student_log_pi(job, rows), batch)
