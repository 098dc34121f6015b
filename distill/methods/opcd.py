"""On-policy context distillation (OPCD): move a knowledge text from the prompt into the weights.

The recipe (Ye et al. 2026; microsoft/LMOps `opcd/`, `oel/`), one optimizer
step per freshly sampled batch:

1. take a batch of the round's logged states x (the environment is not needed);
2. the student samples y ~ pi_theta(. | x) WITHOUT the knowledge, at the
   rollout temperature T;
3. the frozen teacher scores the same tokens with the knowledge e in its
   prompt, pi_t(. | e, x, y<t);
4. loss = mean over response tokens of the top-k reverse KL
   sum_{v in TopK_student} p_s(v) (log p_s(v) - log p_t(v)), both at T,
   gradient into the student only (`distill.losses.opcd_token_kl`);
5. the job shell takes one AdamW step with the gradient norm clipped.

Choices worth knowing, candidly:

- The student samples with the deployed sampler settings (T, top-p, top-k),
  so it visits the prefixes it will visit when deployed; the KL itself is
  over the full-vocabulary distributions at T, as the policy's log-prob
  definition (`agent.policy`) is.
- "Strictly on-policy" means exactly one update per sampled batch: no
  minibatch epochs, no importance ratios. At 135M on CPU, generation is most
  of the step's time anyway.
- `token_kl` is also the OPCD term of `opcd+rl` (`distill.methods.opcd_rl`),
  which applies it to the RL episodes' own sampled tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from distill.data import round_steps, state_pool, take_batch
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.losses import DEFAULT_TOPK, opcd_token_kl
from distill.scoring import pack, response_hidden, response_logits


@dataclass
class Config:
    """OPCD's own settings."""

    batch: int = 4
    """Logged states per step (one sampled response each)."""
    topk: int = DEFAULT_TOPK
    """k of the top-k reverse KL (the student's top-k tokens at each position)."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.topk < 1:
            raise ConsolidationError(f"batch and topk must be >= 1, got {self.batch}, {self.topk}")


@dataclass
class Response:
    """One training row: the state, the student's prompt ids, and the tokens it sampled."""

    state: str
    prompt_ids: list[int]
    response_ids: list[int]


def token_kl(job: ConsolidationJob, rows: list[Any], student_logits: torch.Tensor, topk: int) -> torch.Tensor:
    """Per response token [N], the top-k reverse KL of the student to the knowledge-prompted teacher.

    `rows` need `state` and `response_ids`; `student_logits` are the student's
    logits at those rows' response positions, in order.
    """
    teacher_batch = pack(
        [job.teacher_prompt_ids(r.state) for r in rows],
        [r.response_ids for r in rows],
        job.pad_id,
        job.device,
    )
    with torch.no_grad():
        teacher_hidden = response_hidden(job.teacher, teacher_batch)
    return opcd_token_kl(
        student_logits, teacher_hidden, job.teacher.get_output_embeddings(), job.config.temperature, topk,
        job.config.chunk,
    )  # fmt: skip


class Method(MethodBase):
    """OPCD; see the module docstring."""

    uses_knowledge = True

    def prepare(self, job: ConsolidationJob) -> None:
        cfg = job.config
        self.pool = state_pool(round_steps(job.store, cfg.run, cfg.round, cfg.split))

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. a batch of logged states, in the order fixed by (seed, step)
        states = [e.state for e in take_batch(self.pool, self.config.batch, step, job.config.seed)]
        # ---- 2. the student samples WITHOUT the knowledge
        completions = job.generate(job.student, states, step)
        rows = [Response(s, c.prompt_ids, c.token_ids) for s, c in zip(states, completions, strict=True)]
        return Batch(rows, totals={"tokens": sum(len(r.response_ids) for r in rows)})

    def loss(self, job: ConsolidationJob, rows: list[Response], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 3. the student scores its tokens with gradient, the teacher (knowledge in its prompt) without
        student_batch = pack(
            [r.prompt_ids for r in rows], [r.response_ids for r in rows], job.pad_id, job.device
        )
        kl = token_kl(job, rows, response_logits(job.student, student_batch), self.config.topk)
        # ---- 4. mean over the batch's response tokens
        loss = kl.sum() / batch.totals["tokens"]
        return loss, {"kl": float(loss.detach())}
