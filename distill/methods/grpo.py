"""RL on environment rewards: GRPO, or GMPO's geometric-mean variant, in both action modes.

One sampled batch per step, used for `updates` optimizer steps:

1. groups: `groups` tasks with `group_size` episodes each from one seed,
   played by the live student without knowledge (`source = "rollouts"`), or
   the round's own collected groups (`source = "round"`); `distill.groups`;
2. each episode's return is its reward; advantages are normalised within its
   group; groups whose rewards are all equal are skipped, and of the rest the
   `keep_top` fraction with the largest spread trains (RAGEN's filter). With
   `baseline = "state"` an action is compared only with the group's episodes
   that reached its state; with `baseline = "outcomes"` (scored mode),
   step-level credit: Q(s, a) minus the mean Q of s in the outcome table of
   the run's every round (`distill.credit`), and every group trains;
3. the rows are the kept episodes' actions, exactly as logged: text mode,
   every turn's prompt and reply token ids with the behaviour log-probs;
   scored mode, every scored step's candidates with log pi_old as sampled;
4. loss = GRPO's clipped ratio exp(log pi - log pi_old) x advantage, averaged
   over the batch's reply tokens (text) or chosen commands (scored), or GMPO's
   geometric mean of ratios per episode; plus kl_beta times the KL to the
   reference (the frozen starting checkpoint): k3 per token, or the exact KL
   over the candidates (`distill.policy_gradient`);
5. the job shell takes `updates` AdamW steps on the batch.

Choices worth knowing, candidly:

- An episode of several turns is one trajectory with one reward: every
  action of it gets the episode's advantage under the group baseline, and
  GMPO's "sequence" is the whole episode (the job shell never splits one
  across micro-batches).
- With the default `updates = 1` on fresh rollouts the ratio is 1 up to
  float noise and the clip never binds: this is really REINFORCE with a
  group baseline. The clip matters with `updates > 1` (GRPO's mu) or with
  the round's groups reused over several steps. The ratio's numerator is
  taken at each episode's own sampling T, as its denominator was.
- The text sampler uses the deployed settings (T, top-p, top-k) while
  log-probs are over the full vocabulary at T (`agent.policy`'s definition),
  so the gradient ignores the truncation; at top-p 0.8 the bias is small.
- Rewards are raw episode returns; zero-variance groups are dropped rather
  than resampled (DAPO resamples; on 2 CPU cores that doubles the cost).
- Scored mode can centre the pushes (`center`, off by default): one update
  on FrozenLake moved every state towards the same move, and centring trains
  only what differs between states (`distill.policy_gradient.center_pushes`).
"""

from __future__ import annotations

import torch

from distill import groups as grouping
from distill import policy_gradient as pg
from distill.job import Batch, ConsolidationJob
from distill.text_batches import pack, response_logits


class TextMethod(pg.GroupMethod):
    """GRPO / GMPO on reply tokens; see the module docstring."""

    Config = pg.Config

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. G episodes per task, played by the live student (or the round's groups)
        groups, info = pg.sample_groups(job, self.config, step, self.pool)
        # ---- 2. group-normalised advantages; equal-reward groups skipped, the top spread kept
        selection = grouping.select(groups, self.config.keep_top)
        # ---- 3. every turn of the kept episodes, with its behaviour log-probs
        return pg.turn_batch(groups, selection, self.config.baseline, all_episodes=False, info=info)

    def loss(self, job: ConsolidationJob, rows: list[pg.TurnRow], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 4. the clipped policy-gradient loss on the student's recomputed log-probs
        packed = pack([r.turn.prompt_ids for r in rows], [r.turn.completion_ids for r in rows], job.pad_id,
                      job.device)  # fmt: skip
        return pg.text_rl_loss(job, self.config, rows, response_logits(job.student, packed), packed.targets,
                               batch)  # fmt: skip


def student_log_pi(job: ConsolidationJob, rows: list[pg.ActionRow]) -> list[torch.Tensor]:
    """The live student's log pi over each row's candidates, on the exact prompts it scored, with gradient."""
    return job.candidate_log_pi([r.step for r in rows], [r.step.temperature for r in rows])


class ScoredMethod(pg.GroupMethod):
    """GRPO / GMPO on the chosen command's probability; see the module docstring."""

    Config = pg.Config

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. G scored episodes per task (or the round's groups); 2. advantages, filter
        groups, info = pg.sample_groups(job, self.config, step, self.pool)
        selection = grouping.select(groups, self.config.keep_top)
        # ---- 3. every scored step of the kept episodes (their pushes centred over the batch, if asked)
        return pg.action_batch(groups, selection, self.config.baseline, all_episodes=False, info=info,
                               outcomes=self.outcomes, center=self.config.center)  # fmt: skip

    def loss(
        self, job: ConsolidationJob, rows: list[pg.ActionRow], batch: Batch
    ) -> tuple[torch.Tensor, dict]:
        # ---- 4. the clipped policy-gradient loss on log pi(chosen), recomputed with gradient
        return pg.scored_rl_loss(job, self.config, rows, student_log_pi(job, rows), batch)
