"""Off-policy context distillation, OPCD's baseline: the teacher samples with the knowledge, the student
imitates it by forward KL.

1. take a batch of the round's logged states x;
2. the frozen teacher samples y ~ pi_t(. | e, x) WITH the knowledge e in its
   prompt (this is what makes it off-policy: the student never chose y);
3. the student scores the same tokens without the knowledge;
4. loss = mean over response tokens of the forward KL over the teacher's
   top-k, sum_{v in TopK_teacher} p_t(v) (log p_t(v) - log p_s(v)), at T
   (`distill.losses.offpolicy_token_kl`);
5. one AdamW step (the job shell).

It shares the job shell, the batch order and the sampler settings with
`opcd`, so the two compare fairly; on this CPU it costs more per step,
because the teacher generates with the knowledge-long prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.data import Response, round_steps, state_pool, take_batch
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.losses import DEFAULT_TOPK, offpolicy_token_kl
from distill.text_batches import pack, response_hidden, response_logits


@dataclass
class TextConfig:
    """Off-policy distillation's own settings."""

    batch: int = 4
    """Logged states per step (one teacher sample each)."""
    topk: int = DEFAULT_TOPK
    """k of the top-k forward KL (the teacher's top-k tokens at each position)."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.topk < 1:
            raise ConsolidationError(f"batch and topk must be >= 1, got {self.batch}, {self.topk}")


class TextMethod(MethodBase):
    """Off-policy context distillation; see the module docstring."""

    Config = TextConfig
    uses_knowledge = True
    distills = True

    def prepare(self, job: ConsolidationJob) -> None:
        cfg = job.config
        self.pool = state_pool(round_steps(job.store, cfg.run, cfg.round, cfg.split))

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. a batch of logged states; 2. the teacher samples WITH the knowledge
        states = [e.state for e in take_batch(self.pool, self.config.batch, step, job.config.seed)]
        completions = job.generate(job.teacher, states, step, knowledge=job.knowledge)
        rows = [Response(s, job.prompt_ids(s), c.token_ids) for s, c in zip(states, completions, strict=True)]
        return Batch(rows, totals={"tokens": sum(len(r.response_ids) for r in rows)})

    def loss(self, job: ConsolidationJob, rows: list[Response], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 3. the student (no knowledge) and the teacher (knowledge) score the teacher's tokens
        responses = [r.response_ids for r in rows]
        student_batch = pack([r.prompt_ids for r in rows], responses, job.pad_id, job.device)
        student_logits = response_logits(job.student, student_batch)
        teacher_batch = pack(
            [job.teacher_prompt_ids(r.state) for r in rows], responses, job.pad_id, job.device
        )
        with torch.no_grad():
            teacher_hidden = response_hidden(job.teacher, teacher_batch)
        # ---- 4. forward KL over the teacher's top-k, mean over the batch's response tokens
        kl = offpolicy_token_kl(
            student_logits, teacher_hidden, job.teacher.get_output_embeddings(), job.config.temperature,
            self.config.topk, job.config.chunk,
        )  # fmt: skip
        loss = kl.sum() / batch.totals["tokens"]
        return loss, {"kl": float(loss.detach())}
