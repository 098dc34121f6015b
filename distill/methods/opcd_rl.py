"""OPCD + RL, as KDRL sums them: w * RL + (1 - w) * OPCD on the same samples, one student forward.

A composition of the two terms, each from its one home (the RL term from
`distill.policy_gradient`, OPCD's KL from `distill.teacher_kl`), in both
action modes:

1. sample exactly as `rl` does: G episodes per task without knowledge,
   advantages within groups (or step-level credit), RAGEN's filter;
2. the rows are every action of EVERY episode: the OPCD term needs no reward,
   only the student's own samples, so skipped groups still teach it; the RL
   term trains only on the kept groups' actions;
3. one student forward per micro-batch feeds both terms, each pre-scaled to
   its own batch mean: text mode, the response logits give the RL token
   ratios and the top-k reverse KL to the knowledge-prompted teacher; scored
   mode, the candidate scores give log softmax(score / T_played) for the RL
   ratio and log softmax(score / T_job) for the exact KL (collection plays
   without knowledge, so the played prompt is the student's own);
4. loss = rl_weight * RL + (1 - rl_weight) * OPCD; the job shell steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill import groups as grouping
from distill import policy_gradient as pg
from distill.candidates import candidate_scores
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob
from distill.losses import DEFAULT_TOPK
from distill.teacher_kl import state_kl, token_kl
from distill.text_batches import pack, response_logits


@dataclass
class OPCDRLConfig(pg.Config):
    """RL's settings, plus OPCD's top-k and the weight between the two."""

    topk: int = DEFAULT_TOPK
    """k of OPCD's top-k reverse KL (text mode)."""
    rl_weight: float = 0.5
    """loss = rl_weight * RL + (1 - rl_weight) * OPCD."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.rl_weight <= 1 or self.topk < 1:
            raise ConsolidationError(
                f"need 0 <= rl_weight <= 1 and topk >= 1, got {self.rl_weight}, {self.topk}"
            )


def weighted(
    config: OPCDRLConfig, rl: torch.Tensor, kl: torch.Tensor, stats: dict
) -> tuple[torch.Tensor, dict]:
    """Step 4: the weighted sum of the two terms, and both logged."""
    w = config.rl_weight
    return w * rl + (1.0 - w) * kl, {**stats, "kl": float(kl.detach())}


class TextMethod(pg.GroupMethod):
    """OPCD + RL on reply tokens; see the module docstring."""

    Config = OPCDRLConfig
    uses_knowledge = True

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. RL's groups and advantages; 2. rows for every episode's turns
        groups, info = pg.sample_groups(job, self.config, step, self.pool)
        selection = grouping.select(groups, self.config.keep_top)
        return pg.turn_batch(groups, selection, self.config.baseline, all_episodes=True, info=info)

    def loss(self, job: ConsolidationJob, rows: list[pg.TurnRow], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 3. one student forward, both terms
        packed = pack([r.turn.prompt_ids for r in rows], [r.turn.completion_ids for r in rows], job.pad_id,
                      job.device)  # fmt: skip
        logits = response_logits(job.student, packed)
        rl, stats = pg.text_rl_loss(job, self.config, rows, logits, packed.targets, batch)
        kl = token_kl(job, rows, logits, self.config.topk).sum() / batch.totals["tokens"]
        # ---- 4. the weighted sum
        return weighted(self.config, rl, kl, stats)


class ScoredMethod(pg.GroupMethod):
    """OPCD + RL on candidate distributions; see the module docstring."""

    Config = OPCDRLConfig
    uses_knowledge = True

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. RL's groups and advantages; 2. rows for every episode's scored steps
        groups, info = pg.sample_groups(job, self.config, step, self.pool)
        selection = grouping.select(groups, self.config.keep_top)
        return pg.action_batch(groups, selection, self.config.baseline, all_episodes=True, info=info,
                               outcomes=self.outcomes, center=self.config.center)  # fmt: skip

    def loss(
        self, job: ConsolidationJob, rows: list[pg.ActionRow], batch: Batch
    ) -> tuple[torch.Tensor, dict]:
        # ---- 3. one forward of the student's candidate scores feeds both terms
        states = [r.step for r in rows]
        prompts, candidates = [s.prompt_ids for s in states], [s.candidate_ids for s in states]
        scores = candidate_scores(job.student, prompts, candidates, job.pad_id)
        played = [torch.log_softmax(x / s.temperature, dim=0) for x, s in zip(scores, states, strict=True)]
        rl, stats = pg.scored_rl_loss(job, self.config, rows, played, batch)
        student = [torch.log_softmax(x / job.config.temperature, dim=0) for x in scores]
        kl = state_kl(job, states, student).sum() / batch.totals["states"]
        # ---- 4. the weighted sum
        return weighted(self.config, rl, kl, stats)
