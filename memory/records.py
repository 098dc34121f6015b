"""What the rollout code hands the store: one `StepRecord` per agent step.

A plain dataclass, not an ORM object, so that rollouts (in `agent`) build
records cheaply and the store turns a whole batch of them into one
executemany. Token ids and log-probs are optional because remote backends
(LangChain chat models) cannot always give them; the store keeps NULL then,
and an episode's token count becomes unknown rather than wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StepRecord:
    """One agent step: what the model saw, what it said, and what the environment did."""

    index: int
    """Position of the step in its episode, from 0."""
    state: str
    """The situation text the prompt was built from (the history), WITHOUT knowledge."""
    prompt: str
    """The full user message actually sent (with knowledge, if any)."""
    completion_text: str
    """The raw model reply."""
    action: str
    """The parsed action sent to the environment."""
    observation: str
    """The environment's observation returned after the action."""
    reward: float
    """The reward of this step."""
    prompt_ids: list[int] | None = None
    """Prompt token ids; None when the backend cannot give tokens."""
    completion_ids: list[int] | None = None
    """Completion token ids; None when the backend cannot give tokens."""
    logprobs: list[float] | None = None
    """Log-probability of each completion token under the sampling policy."""
    latency_s: float = 0.0
    """Wall-clock seconds the policy took for this step."""
    candidates: dict | None = None
    """Scored action mode only: the distribution the action was sampled from, as
    {"commands": [...], "logprobs": [...], "chosen": i, "temperature": T} where
    logprobs[j] = log softmax(score / T)[j] over the candidates and score[j] is the
    sum of command j's token log-probs; None for a text-mode step."""
