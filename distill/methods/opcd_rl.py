"""OPCD + RL, as KDRL sums them: w * RL + (1 - w) * OPCD on the same sampled tokens.

A composition of two existing losses, not a copy of either:

1. sample exactly as `rl` does (`distill.methods.grpo.sample_groups`): G
   episodes per task without knowledge, advantages within groups;
2. the rows are every turn of EVERY episode: the OPCD term needs no reward,
   only the student's own samples, so skipped groups still teach it; the RL
   term trains only on the kept groups' turns;
3. one student forward per micro-batch feeds both terms:
   `grpo.rl_loss` (clipped ratio, optional k3 KL) and `opcd.token_kl` (top-k
   reverse KL to the knowledge-prompted teacher), each pre-scaled to its own
   batch mean;
4. loss = rl_weight * RL + (1 - rl_weight) * OPCD; the job shell steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill import groups as grouping
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob
from distill.losses import DEFAULT_TOPK
from distill.methods import grpo, opcd
from distill.scoring import pack, response_logits


@dataclass
class Config(grpo.Config):
    """RL's settings, plus OPCD's top-k and the weight between the two."""

    topk: int = DEFAULT_TOPK
    """k of OPCD's top-k reverse KL."""
    rl_weight: float = 0.5
    """loss = rl_weight * RL + (1 - rl_weight) * OPCD."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.rl_weight <= 1 or self.topk < 1:
            raise ConsolidationError(
                f"need 0 <= rl_weight <= 1 and topk >= 1, got {self.rl_weight}, {self.topk}"
            )


class Method(grpo.Method):
    """OPCD + RL; see the module docstring."""

    uses_knowledge = True

    def needs_teacher(self) -> bool:
        return True

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. RL's groups and advantages; 2. rows for every episode's turns
        groups, info = grpo.sample_groups(job, self.config, step, self.pool)
        selection = grouping.select(groups, self.config.keep_top)
        return grpo.turn_batch(groups, selection, self.config.baseline, all_episodes=True, info=info)

    def loss(
        self, job: ConsolidationJob, rows: list[grpo.TurnRow], batch: Batch
    ) -> tuple[torch.Tensor, dict]:
        # ---- 3. one student forward, both terms
        packed = pack([r.turn.prompt_ids for r in rows], [r.turn.completion_ids for r in rows], job.pad_id,
                      job.device)  # fmt: skip
        logits = response_logits(job.student, packed)
        rl, stats = grpo.rl_loss(job, self.config, rows, logits, packed.targets, batch)
        kl = opcd.token_kl(job, rows, logits, self.config.topk).sum() / batch.totals["tokens"]
        # ---- 4. the weighted sum
        w = self.config.rl_weight
        return w * rl + (1.0 - w) * kl, {**stats, "kl": float(kl.detach())}
