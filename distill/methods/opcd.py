"""On-policy context distillation (OPCD): move a knowledge text from the prompt into the weights.

The recipe (Ye et al. 2026; microsoft/LMOps `opcd/`, `oel/`), one optimizer
step per freshly drawn batch, in both action modes:

1. take a batch of the round's logged states x (the environment is not needed),
   in the order fixed by (seed, step);
2. the student acts on x WITHOUT the knowledge e, at the rollout temperature T:
   text mode samples a reply y ~ pi_theta(. | x); scored mode needs no sample,
   since its policy is the distribution softmax(score(a) / T) over the state's
   admissible commands, scored exactly;
3. the frozen teacher reads the same with e in its prompt, no gradient;
4. loss = the reverse KL from student to teacher (`distill.teacher_kl`):
   text: mean over response tokens of the top-k reverse KL
   sum_{v in TopK_student} p_s(v) (log p_s(v) - log p_t(v)), both at T;
   scored: mean over states of the exact KL(pi_s || pi_t) over the candidates
   (or, with `divergence = "forward"`, KL(pi_t || pi_s));
5. the job shell takes one AdamW step with the gradient norm clipped.

Choices worth knowing, candidly:

- The text student samples with the deployed sampler settings (T, top-p,
  top-k), so it visits the prefixes it will visit when deployed; the KL itself
  is over the full-vocabulary distributions at T, as the policy's log-prob
  definition (`agent.policy`) is.
- "Strictly on-policy" means exactly one update per drawn batch: no minibatch
  epochs, no importance ratios. At 135M on CPU, generation is most of a text
  step's time; a scored step costs two forwards of a batch of prompts.
- Scored states come from the student's own logged play, so they stay
  on-policy without sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from agent.policy import encode_chat
from agent.prompts import build_scored_messages
from distill.candidates import ScoredState
from distill.data import Response, check_replay, round_steps, scored_pool, state_pool, take_batch
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.losses import DEFAULT_TOPK
from distill.teacher_kl import state_kl, token_kl
from distill.text_batches import pack, response_logits


@dataclass
class TextConfig:
    """OPCD's own settings, text mode."""

    batch: int = 4
    """Logged states per step (one sampled response each)."""
    topk: int = DEFAULT_TOPK
    """k of the top-k reverse KL (the student's top-k tokens at each position)."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.topk < 1:
            raise ConsolidationError(f"batch and topk must be >= 1, got {self.batch}, {self.topk}")


DIVERGENCES = ("reverse", "forward")


@dataclass
class ScoredConfig:
    """OPCD's own settings, scored mode."""

    batch: int = 16
    """Logged scored states per step."""
    divergence: str = "reverse"
    """reverse: KL(student || teacher), OPCD's; forward: KL(teacher || student), the teacher-weighted
    cross-entropy, whose gradient stays large where the student is sure of a move the teacher is not (a
    freshly ternarized student: README, "Sparse-ternary students")."""
    replay: int = 0
    """Also the states of this many earlier rounds (-1: every earlier round): where each round was played by
    the student being distilled, the pool is every state it visited so far, labelled by the teacher
    (DAgger's aggregate, Ross et al. 2011), so a mistake it stopped making is not forgotten."""

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConsolidationError(f"batch must be >= 1, got {self.batch}")
        check_replay(self.replay)
        if self.divergence not in DIVERGENCES:
            raise ConsolidationError(
                f"unknown divergence {self.divergence!r}; choose one of {', '.join(DIVERGENCES)}"
            )


class TextMethod(MethodBase):
    """OPCD on sampled replies; see the module docstring."""

    Config = TextConfig
    uses_knowledge = True
    distills = True

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


def student_log_pi(job: ConsolidationJob, states: list[ScoredState]) -> list[torch.Tensor]:
    """The student's log pi over each state's candidates, its prompt WITHOUT knowledge, at the job's T
    (through the trunk cache when only the top blocks train)."""
    rebuilt = [
        replace(s, prompt_ids=encode_chat(job.tokenizer, build_scored_messages(s.state, s.commands)))
        for s in states
    ]
    return job.candidate_log_pi(rebuilt, [job.config.temperature] * len(states))


class ScoredMethod(MethodBase):
    """OPCD on candidate distributions; see the module docstring."""

    Config = ScoredConfig
    uses_knowledge = True
    distills = True

    def prepare(self, job: ConsolidationJob) -> None:
        cfg = job.config
        self.pool = scored_pool(job.store, cfg.run, cfg.round, cfg.split, replay=self.config.replay)

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. a batch of the round's (and the replayed rounds') scored states
        states = take_batch(self.pool, self.config.batch, step, job.config.seed)
        return Batch(states, totals={"states": len(states)}, info={"states": len(states)})

    def loss(self, job: ConsolidationJob, rows: list[ScoredState], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 2. the student scores the candidates without the knowledge; 3. the teacher with it;
        # ---- 4. the exact reverse KL, mean over the batch's states
        kl = state_kl(job, rows, student_log_pi(job, rows), forward=self.config.divergence == "forward")
        loss = kl.sum() / batch.totals["states"]
        return loss, {"kl": float(loss.detach())}
