"""SFT on won episodes, scored mode: raise the probability of the commands the policy chose when it won.

Expert iteration (STaR, ReST) with scored actions: the pool is the round's
won episodes' scored steps, and the loss is the cross-entropy of the chosen
command under the candidate softmax at the job's T,

1. the pool: unique (state, candidates, chosen) of the round's won episodes;
2. a batch of them in the seeded order;
3. loss = mean over states of -log pi(chosen | s), recomputed with gradient
   (`distill.candidates`), which pushes the other candidates down too, unlike
   token NLL on the command alone;
4. one AdamW step (the job shell).

With `replay` the pool also holds the won steps of earlier rounds (ReST's
and ExpeL's replay): an old win is still a win, but the moves it imitates
were chosen by an older policy, so they are kept only as long as asked
(`replay` rounds back; -1 keeps them all). `credit` imitates per step instead.

A round without wins has nothing to imitate: every step is empty (0 states,
no optimizer update), so the job's checkpoint keeps M_r's weights and the
loop goes on to the next round instead of stopping on a rare unlucky round.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.candidates import ScoredState
from distill.data import take_batch
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.methods.opcd_scored import scored_pool


@dataclass
class Config:
    """Scored SFT's own settings."""

    batch: int = 16
    """Won scored states per step."""
    replay: int = 0
    """Earlier rounds whose won steps join this round's: 0 none (the round's own wins), -1 every one."""

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConsolidationError(f"batch must be >= 1, got {self.batch}")
        if self.replay < -1:
            raise ConsolidationError(f"replay must be >= -1 (-1 = every earlier round), got {self.replay}")


class Method(MethodBase):
    """Scored SFT on the round's wins; see the module docstring."""

    uses_knowledge = False

    def prepare(self, job: ConsolidationJob) -> None:
        # ---- 1. the won scored states of the round
        self.pool = scored_pool(job, won_only=True, replay=self.config.replay)

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 2. a batch of them
        states = take_batch(self.pool, self.config.batch, step, job.config.seed) if self.pool else []
        return Batch(states, totals={"states": len(states)}, info={"states": len(states)})

    def loss(self, job: ConsolidationJob, rows: list[ScoredState], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 3. cross-entropy of the chosen command under the candidate softmax
        log_pi = job.candidate_log_pi(rows, [job.config.temperature] * len(rows))
        nll = -torch.stack([lp[r.chosen] for lp, r in zip(log_pi, rows, strict=True)])
        loss = nll.sum() / batch.totals["states"]
        return loss, {"nll": float(loss.detach())}
