"""On-policy context distillation, scored mode: the exact reverse KL between candidate distributions.

In the scored action mode a state's policy is a distribution over its
admissible commands, pi(a | s) = softmax(score(a) / T), so the KL OPCD
minimises needs no sampling and no top-k:

1. take a batch of the round's logged scored states (the student's own,
   so the states stay on-policy), in the seeded order;
2. the student scores the state's candidates WITHOUT the knowledge
   (with gradient), the frozen teacher scores them WITH it (no gradient),
   both through `distill.candidates` with the scored prompt;
3. loss = mean over states of KL(pi_student || pi_teacher) =
   sum_a pi_s(a) (log pi_s(a) - log pi_t(a)), exact, at the job's T;
4. one AdamW step (the job shell).

No text is generated, so a step costs two forwards of a batch of prompts.
`state_kl` is also the OPCD term of scored `opcd+rl`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agent.policy import encode_chat
from agent.prompts import build_scored_messages
from distill.candidates import ScoredState, candidate_log_pi, exact_kl
from distill.data import replay_steps, round_steps, take_batch
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase


@dataclass
class Config:
    """Scored OPCD's own settings."""

    batch: int = 16
    """Logged scored states per step."""

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConsolidationError(f"batch must be >= 1, got {self.batch}")


def scored_pool(job: ConsolidationJob, won_only: bool = False, replay: int = 0) -> list[ScoredState]:
    """The round's unique scored states (state, candidates) in first-seen order, and those of `replay`
    earlier rounds (-1: all); of won episodes if asked."""
    cfg = job.config
    if replay:
        steps = replay_steps(job.store, cfg.run, cfg.round, cfg.split, replay)
    else:
        steps = round_steps(job.store, cfg.run, cfg.round, cfg.split)
    steps = steps[steps["candidates"].notna()]
    if steps.empty:
        raise ConsolidationError(
            f'round {cfg.round} of run {cfg.run!r} has no scored steps; play it with action_mode = "scored"'
        )
    if won_only:  # a round without wins gives an empty pool: the caller trains nothing
        steps = steps[steps["episode_won"].astype(bool)]
    pool: dict[tuple, ScoredState] = {}
    for row in steps.itertuples(index=False):
        state = ScoredState.from_step(row.state, row.prompt_ids, row.candidates)
        pool.setdefault(
            (state.state, tuple(map(tuple, state.candidate_ids)), won_only and state.chosen), state
        )
    return list(pool.values())


def state_kl(job: ConsolidationJob, states: list[ScoredState], student: list[torch.Tensor]) -> torch.Tensor:
    """Per state [n], KL(student || knowledge-prompted teacher) over its candidates."""
    teacher_prompts = [
        encode_chat(job.teacher_tokenizer, build_scored_messages(s.state, s.commands, job.knowledge))
        for s in states
    ]
    with torch.no_grad():
        teacher = candidate_log_pi(
            job.teacher, teacher_prompts, [s.candidate_ids for s in states],
            [job.config.temperature] * len(states), job.pad_id,
        )  # fmt: skip
    return torch.stack([exact_kl(s, t) for s, t in zip(student, teacher, strict=True)])


def student_log_pi(job: ConsolidationJob, states: list[ScoredState]) -> list[torch.Tensor]:
    """The student's log pi over each state's candidates, its prompt WITHOUT knowledge, at the job's T."""
    prompts = [encode_chat(job.tokenizer, build_scored_messages(s.state, s.commands)) for s in states]
    return candidate_log_pi(
        job.student,
        prompts,
        [s.candidate_ids for s in states],
        [job.config.temperature] * len(states),
        job.pad_id,
    )


class Method(MethodBase):
    """Scored OPCD; see the module docstring."""

    uses_knowledge = True

    def prepare(self, job: ConsolidationJob) -> None:
        self.pool = scored_pool(job)

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 1. a batch of the round's scored states
        states = take_batch(self.pool, self.config.batch, step, job.config.seed)
        return Batch(states, totals={"states": len(states)}, info={"states": len(states)})

    def loss(self, job: ConsolidationJob, rows: list[ScoredState], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 2. both score the candidates; 3. the exact reverse KL, mean over the batch's states
        kl = state_kl(job, rows, student_log_pi(job, rows))
        loss = kl.sum() / batch.totals["states"]
        return loss, {"kl": float(loss.detach())}
