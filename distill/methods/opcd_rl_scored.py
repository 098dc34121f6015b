"""OPCD + RL, scored mode: w * RL + (1 - w) * OPCD on the same scored states, one student forward.

The composition of `distill.methods.grpo_scored` (clipped ratio on log
pi(chosen)) and `distill.methods.opcd_scored` (exact reverse KL over the
candidates to the knowledge-prompted teacher):

1. sample as scored `rl` does: G scored episodes per task, advantages;
2. rows: every scored step of EVERY episode (OPCD needs no reward), the RL
   term only on the kept groups' steps;
3. one candidate forward of the student per micro-batch, on the played
   prompt (collection plays without knowledge, so it is the student's own):
   the RL term takes log softmax(score / T_played), the OPCD term
   log softmax(score / T_job);
4. loss = rl_weight * RL + (1 - rl_weight) * OPCD; the job shell steps.
"""

from __future__ import annotations

import torch

from distill import groups as grouping
from distill.candidates import candidate_scores
from distill.job import Batch, ConsolidationJob
from distill.methods import grpo, grpo_scored, opcd_rl, opcd_scored

Config = opcd_rl.Config


class Method(grpo_scored.Method):
    """Scored OPCD + RL; see the module docstring."""

    uses_knowledge = True

    def needs_teacher(self) -> bool:
        return True

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. RL's groups and advantages; 2. rows for every episode's scored steps
        groups, info = grpo.sample_groups(job, self.config, step, self.pool)
        selection = grouping.select(groups, self.config.keep_top)
        batch = grpo_scored.action_batch(
            groups, selection, self.config.baseline, True, info=info, outcomes=self.outcomes
        )
        if self.config.center > 0:
            grpo_scored.center_pushes(batch.rows, self.config.center)
        return batch

    def loss(
        self, job: ConsolidationJob, rows: list[grpo_scored.ActionRow], batch: Batch
    ) -> tuple[torch.Tensor, dict]:
        # ---- 3. one forward of the student's candidate scores feeds both terms
        states = [r.step for r in rows]
        prompts, candidates = [s.prompt_ids for s in states], [s.candidate_ids for s in states]
        scores = candidate_scores(job.student, prompts, candidates, job.pad_id)
        played = [torch.log_softmax(x / s.temperature, dim=0) for x, s in zip(scores, states, strict=True)]
        rl, stats = grpo_scored.rl_loss(job, self.config, rows, played, batch)
        student = [torch.log_softmax(x / job.config.temperature, dim=0) for x in scores]
        kl = opcd_scored.state_kl(job, states, student).sum() / batch.totals["states"]
        # ---- 4. the weighted sum
        w = self.config.rl_weight
        return w * rl + (1.0 - w) * kl, {**stats, "kl": float(kl.detach())}
