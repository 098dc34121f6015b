"""Policy forms: how a policy's output becomes an action. One class each, chosen by `action_mode`.

- `TextForm` is OEL's protocol: the model reasons in free text and ends with
  a bracketed action, which `agent.actions.parse_action` finds (or maps to
  an admissible command). Real models (1.7B and up) play this way, and the
  paper's numbers are in this mode. It stays exactly as it was.
- `ScoredForm` is GLAM's (Carta et al. 2023): where the game lists its
  admissible commands, each command is scored as the reply to the prompt,
  log P(reply = command) summed over its tokens at T = 1, all candidates
  sharing the prompt's KV in one forward (`Policy.score`); the action is
  sampled from softmax(score / T) over the candidates, or is the argmax when
  greedy. Every action is then valid, which is what lets a 135M model act at
  all. The prompt is `agent.prompts.build_scored_prompt`: OEL's, its question
  naming the commands, and by default only the current observation as the
  state (the grid games are fully observed; every step's prompt is short to
  train on, and the prefix cache still shares what prompts have in common:
  the role, the knowledge, a GRPO group's identical first prompt). Where a
  step lists no commands (tool tasks) the form falls back to text for that
  step, and the episode says so (`text-fallback`).

What a scored step stores: the chosen command's token ids as the completion,
their exact token log-probs (T = 1; they sum to the command's score), and the
candidate distribution (`memory.records.CandidateDistribution`: commands,
their token ids, log softmax(score / T), the chosen index, T), from which
training recomputes log pi(chosen) exactly.

T is the sampling temperature of the form's calls, so exploration during
collection is simply a higher T; the stored candidate log-probs are those of
the distribution actually sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from agent.actions import parse_action
from agent.policy import Policy, PolicyError, SamplingParams
from agent.prompts import (
    PromptConfig,
    build_messages,
    build_scored_messages,
    render_scored_state,
    render_state,
)
from memory.records import CandidateDistribution

ACTION_MODES = ("text", "scored")


@dataclass
class Decision:
    """One slot's step: the action, and everything the store keeps about how it was chosen."""

    action: str
    state: str
    """The knowledge-free situation text the prompt was built from."""
    prompt: str
    """The user message actually sent."""
    completion_text: str
    prompt_ids: list[int] | None
    completion_ids: list[int] | None
    logprobs: list[float] | None
    latency_s: float
    prompt_computed: int | None
    candidates: CandidateDistribution | None = None
    """Scored steps only: the candidate distribution (see the module docstring)."""

    @property
    def mode(self) -> str:
        return "text" if self.candidates is None else "scored"


History = tuple[Sequence[str], Sequence[str]]
"""(observations, actions) of an episode so far: one more observation than actions."""


class ActionForm(Protocol):
    """Turns a batch of episodes so far into actions."""

    mode: str

    def act(
        self, histories: Sequence[History], admissible: Sequence[Sequence[str] | None], knowledge: str | None,
        params: SamplingParams,
    ) -> list[Decision]: ...  # fmt: skip


class TextForm:
    """OEL's free-text protocol: generate, then parse the bracketed action."""

    mode = "text"

    def __init__(self, policy: Policy, prompt: PromptConfig | None = None) -> None:
        self.policy = policy
        self.prompt = prompt or PromptConfig()

    def act(
        self, histories: Sequence[History], admissible: Sequence[Sequence[str] | None], knowledge: str | None,
        params: SamplingParams,
    ) -> list[Decision]:  # fmt: skip
        states = [render_state(observations, actions, self.prompt) for observations, actions in histories]
        conversations = [build_messages(state, knowledge) for state in states]
        completions = self.policy.generate(conversations, params)
        return [
            Decision(
                action=parse_action(c.text, commands).action,
                state=state,
                prompt=conv[0]["content"],
                completion_text=c.text,
                prompt_ids=c.prompt_ids,
                completion_ids=c.token_ids,
                logprobs=c.logprobs,
                latency_s=c.latency_s,
                prompt_computed=c.prompt_computed,
            )  # fmt: skip
            for state, conv, c, commands in zip(states, conversations, completions, admissible, strict=True)
        ]


class ScoredForm:
    """GLAM's scored actions over the admissible commands; text where a step lists none."""

    mode = "scored"

    def __init__(self, policy: Policy, prompt: PromptConfig | None = None) -> None:
        if not getattr(policy, "can_score", False):
            raise PolicyError(
                f"{policy.name} cannot score candidate actions exactly, so it cannot play "
                "--action-mode scored; use the hf backend, or --action-mode text"
            )
        self.policy = policy
        self.prompt = prompt or PromptConfig()
        self.text = TextForm(policy, self.prompt)
        self._calls = 0

    def act(
        self, histories: Sequence[History], admissible: Sequence[Sequence[str] | None], knowledge: str | None,
        params: SamplingParams,
    ) -> list[Decision]:  # fmt: skip
        scored = [i for i, commands in enumerate(admissible) if commands]
        plain = [i for i, commands in enumerate(admissible) if not commands]
        decisions: list[Decision | None] = [None] * len(histories)
        if plain:
            fallback = self.text.act([histories[i] for i in plain], [None] * len(plain), knowledge, params)
            for i, decision in zip(plain, fallback, strict=True):
                decisions[i] = decision
        if scored:
            states = {i: render_scored_state(*histories[i], self.prompt) for i in scored}
            commands = [list(admissible[i]) for i in scored]
            conversations = [
                build_scored_messages(states[i], c, knowledge) for i, c in zip(scored, commands, strict=True)
            ]
            results = self.policy.score(conversations, commands)
            generator = None
            if params.seed is not None:
                generator = torch.Generator().manual_seed(params.seed + self._calls)
            self._calls += 1
            for i, conv, options, result in zip(scored, conversations, commands, results, strict=True):
                scores = torch.tensor(result.scores, dtype=torch.float64)
                temperature = 1.0 if params.greedy else params.temperature
                log_pi = torch.log_softmax(scores / temperature, dim=0)
                if params.greedy:
                    chosen = int(scores.argmax())
                else:
                    chosen = int(torch.multinomial(log_pi.exp(), 1, generator=generator))
                decisions[i] = Decision(
                    action=options[chosen], state=states[i], prompt=conv[0]["content"],
                    completion_text=options[chosen],
                    prompt_ids=result.prompt_ids, completion_ids=result.candidate_ids[chosen],
                    logprobs=result.token_logprobs[chosen], latency_s=result.latency_s,
                    prompt_computed=result.prompt_computed,
                    candidates=CandidateDistribution(
                        commands=list(options), ids=result.candidate_ids, logprobs=log_pi.tolist(),
                        chosen=chosen, temperature=temperature,
                    ),
                )  # fmt: skip
        return decisions


def make_form(policy: Policy, action_mode: str, prompt: PromptConfig | None = None) -> ActionForm:
    """The form for `action_mode` (text or scored) on `policy`; PolicyError names what is possible."""
    if action_mode == "text":
        return TextForm(policy, prompt)
    if action_mode == "scored":
        return ScoredForm(policy, prompt)
    raise PolicyError(f"unknown action mode {action_mode!r}; choose one of {', '.join(ACTION_MODES)}")
