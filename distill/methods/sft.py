"""SFT on won episodes: imitate what the policy did when it won (expert iteration), in both action modes.

With the policy's own wins as the data this is expert iteration (STaR,
ReST): play, keep what worked, imitate it, play again. It needs no teacher
and no knowledge, which makes it the baseline every knowledge-based method
has to beat.

1. the pool, exactly as logged (no re-tokenization): text mode, the unique
   (state, completion ids) pairs of the round's won episodes; scored mode,
   the unique (state, candidates, chosen) of their scored steps, and with
   `replay` those of earlier rounds too;
2. take a batch of them in the seeded order;
3. loss: text, the mean token negative log-likelihood of the logged
   completion given the state's prompt, at T = 1 (`distill.losses.token_nll`);
   scored, the mean over states of -log pi(chosen | s) under the candidate
   softmax at the job's T, recomputed with gradient (`distill.candidates`),
   which pushes the other candidates down too, unlike token NLL on the
   command alone;
4. one AdamW step (the job shell).

`replay` (scored mode; ReST's and ExpeL's replay): an old win is still a
win, but the moves it imitates were chosen by an older policy, so they are
kept only as long as asked (`replay` rounds back; -1 keeps them all).
`credit` imitates per step instead.

A round without wins has nothing to imitate: every step is empty (no
optimizer update) rather than train on failures, so the job's checkpoint
keeps M_r's weights and a loop goes on to its next round instead of
stopping on a rare unlucky round.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.candidates import ScoredState
from distill.data import Response, check_replay, round_steps, scored_pool, take_batch, won_pool
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.losses import token_nll
from distill.text_batches import pack, response_logits


@dataclass
class TextConfig:
    """SFT's own settings, text mode."""

    batch: int = 4
    """(state, completion) pairs per step."""

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConsolidationError(f"batch must be >= 1, got {self.batch}")


@dataclass
class ScoredConfig:
    """SFT's own settings, scored mode."""

    batch: int = 16
    """Won scored states per step."""
    replay: int = 0
    """Earlier rounds whose won steps join this round's: 0 none (the round's own wins), -1 every one."""

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConsolidationError(f"batch must be >= 1, got {self.batch}")
        check_replay(self.replay)


class TextMethod(MethodBase):
    """SFT on the round's won replies; see the module docstring."""

    Config = TextConfig

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


class ScoredMethod(MethodBase):
    """SFT on the won scored steps; see the module docstring."""

    Config = ScoredConfig

    def prepare(self, job: ConsolidationJob) -> None:
        # ---- 1. the won scored states of the round (and of the replayed rounds)
        cfg = job.config
        self.pool = scored_pool(job.store, cfg.run, cfg.round, cfg.split, won_only=True,
                                replay=self.config.replay)  # fmt: skip

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
