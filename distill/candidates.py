"""Candidate distributions of scored-mode states, recomputed with gradient for training.

A scored step sampled its action from pi(a | s) = softmax(score(a) / T) over
the admissible commands, score(a) being the sum of the command's token
log-probabilities (T = 1) after the prompt. Training needs log pi for every
candidate of each logged state, for the student with gradient and for a
teacher or reference without. This module recomputes it with exactly the code
that sampled it (`agent.kv_forward`: the prompt once, the candidates as
branches sharing its KV), so a fresh sample's ratio pi_new / pi_old is 1 up to
float rounding, which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agent.kv_forward import Row, branch_logprobs, run_rows
from memory.records import CandidateDistribution


@dataclass
class ScoredState:
    """One logged scored step, as training needs it."""

    state: str
    """The knowledge-free state text (a teacher's prompt is rebuilt from it)."""
    prompt_ids: list[int]
    """The exact prompt the policy scored."""
    commands: list[str]
    """The candidate commands (a teacher's prompt names them, as the student's did)."""
    candidate_ids: list[list[int]]
    """Every candidate's reply tokens, as scored."""
    chosen: int
    """Index of the sampled command."""
    logprobs: list[float]
    """log pi_old over the candidates, as sampled."""
    temperature: float
    """T of the sampled distribution."""

    @classmethod
    def from_step(cls, state: str, prompt_ids: list[int], candidates: dict) -> ScoredState:
        """From a stored step's state, prompt ids and candidates JSON (`memory.records`' schema)."""
        record = CandidateDistribution.from_json(candidates)
        return cls(
            state=state, prompt_ids=list(prompt_ids), commands=record.commands, candidate_ids=record.ids,
            chosen=record.chosen, logprobs=record.logprobs, temperature=record.temperature,
        )  # fmt: skip


def candidate_scores(
    model: Any, prompts: list[list[int]], candidates: list[list[list[int]]], pad_id: int
) -> list[torch.Tensor]:
    """Per state, score(a) = sum of the candidate's token log-probs at T = 1 [K], with gradient if enabled."""
    forward = run_rows(
        model, [Row(trunk=p, branches=c) for p, c in zip(prompts, candidates, strict=True)], pad_id
    )
    return [torch.stack([lp.sum() for lp in branches]) for branches in branch_logprobs(model, forward)]


def candidate_log_pi(
    model: Any,
    prompts: list[list[int]],
    candidates: list[list[list[int]]],
    temperatures: list[float],
    pad_id: int,
) -> list[torch.Tensor]:
    """Per state, log softmax(score / T) over its candidates [K], with gradient if enabled."""
    scores = candidate_scores(model, prompts, candidates, pad_id)
    return [torch.log_softmax(s / t, dim=0) for s, t in zip(scores, temperatures, strict=True)]


def exact_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_a p(a) (log p(a) - log q(a)) over one state's candidates."""
    return (log_p.exp() * (log_p - log_q)).sum()
