"""What the rollout code hands the store: one `StepRecord` per agent step, and a scored step's
`CandidateDistribution`.

Plain dataclasses, not ORM objects, so that rollouts (in `agent`) build
records cheaply and the store turns a whole batch of them into one
executemany. Token ids and log-probs are optional because remote backends
(LangChain chat models) cannot always give them; the store keeps NULL then,
and an episode's token count becomes unknown rather than wrong.

The candidate distribution is stored as one JSON object per scored step (the
`steps.candidates` column), and the reads hand it back as that object;
`CandidateDistribution` is its one schema, which the scored form writes and
every reader parses with `from_json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class CandidateDistribution:
    """The distribution a scored step's action was sampled from.

    logprobs[j] = log softmax(score / T)[j] over the candidates, where score[j]
    is the sum of command j's token log-probabilities after the prompt.
    """

    commands: list[str]
    """The admissible commands, in the order they were scored."""
    ids: list[list[int]]
    """Each command's token ids as scored."""
    logprobs: list[float]
    """log pi(command | state) at `temperature`."""
    chosen: int
    """Index of the command played."""
    temperature: float
    """T of the softmax the action was sampled from (0: greedy, argmax)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object the store keeps."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateDistribution:
        """The record of a stored JSON object (lists and numbers normalised)."""
        return cls(
            commands=[str(c) for c in data["commands"]], ids=[[int(i) for i in c] for c in data["ids"]],
            logprobs=[float(x) for x in data["logprobs"]], chosen=int(data["chosen"]),
            temperature=float(data["temperature"]),
        )  # fmt: skip

    @staticmethod
    def played(data: dict[str, Any]) -> str:
        """The command a stored distribution's step played, read without parsing the rest."""
        return str(data["commands"][int(data["chosen"])])


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
    candidates: CandidateDistribution | None = None
    """Scored action mode only: the distribution the action was sampled from; None for a text-mode step."""
