"""SFT on won episodes: imitate the logged completions of the round's wins (expert iteration).

With the policy's own wins as the data this is expert iteration (STaR,
ReST): play, keep what worked, imitate it, play again. It needs no teacher
and no knowledge, which makes it the baseline every knowledge-based method
has to beat.

1. the prompt pool is the unique (state, completion ids) pairs of the
   round's won episodes, exactly as they were logged (no re-tokenization);
2. take a batch of them in the seeded order;
3. loss = mean token negative log-likelihood of the logged completion
   given the state's prompt, at T = 1 (`distill.losses.token_nll`);
4. one AdamW step (the job shell).

A round without wins has nothing to imitate: every step is empty (no
optimizer update) rather than train on failures, so the job's checkpoint
keeps M_r's weights and a loop goes on to its next round.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.data import round_steps, take_batch, won_pool
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.losses import token_nll
from distill.methods.opcd import Response
from distill.scoring import pack, response_logits


@dataclass
class Config:
    """SFT's own settings."""

    batch: int = 4
    """(state, completion) pairs per step."""

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConsolidationError(f"batch must be >= 1, got {self.batch}")


class Method(MethodBase):
    """SFT on the round's wins; see the module docstring."""

    uses_knowledge = False

    def prepare(self, job: ConsolidationJob) -> None:
        # ---- 1. the won (state, completion) pairs of the round
        cfg = job.config
        self.pool = won_pool(round_steps(job.store, cfg.run, cfg.round, cfg.split))

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 2. a batch of them, in the order fixed by (seed, step)
        examples = take_batch(self.pool, self.config.batch, step, job.config.seed) if self.pool else []
        rows = [Response(e.state, job.prompt_ids(e.state), list(e.completion_ids)) for e in examples]
        return Batch(rows, totals={"tokens": sum(len(r.response_ids) for r in rows)})

    def loss(self, job: ConsolidationJob, rows: list[Response], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 3. token NLL of the logged completions, mean over the batch's tokens
        packed = pack([r.prompt_ids for r in rows], [r.response_ids for r in rows], job.pad_id, job.device)
        nll = token_nll(response_logits(job.student, packed), packed.targets)
        loss = nll.sum() / batch.totals["tokens"]
        return loss, {"nll": float(loss.detach())}
