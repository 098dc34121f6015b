"""The one policy interface every backend implements (the backends themselves: `agent.backends`).

A policy maps a batch of chat conversations to one completion each. Batching
is the point: rollouts step N environments in lockstep and make ONE call per
step, so a backend must serve the whole batch at once.

What a completion records, and why it is shaped so:

- `prompt_ids` / `token_ids` are the exact tokens the model saw and produced,
  unpadded, the completion up to and including its end-of-sequence token.
  Training (OPCD, RL) uses them as they are and never re-tokenizes text,
  because decode->encode does not round-trip.
- `logprobs[i]` is `log_softmax(logits_i / T)[token_i]`: the log-probability
  of the sampled token under the policy's own distribution at the sampling
  temperature T, over the FULL vocabulary, i.e. BEFORE top-k/top-p truncation.
  This is the quantity a trainer recomputes with a teacher-forced forward pass
  (logits / T, full log-softmax), so stored and recomputed values agree and
  RL importance ratios start at 1; OPCD uses the same definition. The
  truncated distribution is deliberately NOT used: reproducing it needs the
  sampler's top-k/top-p masks, which no trainer keeps. At T = 0 (greedy) the
  logits are taken at T = 1.
- A backend that cannot see tokens (a remote LangChain chat model) sets
  `prompt_ids`, `token_ids` and `logprobs` to None: missing, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Conversation = list[dict[str, str]]


class PolicyError(ValueError):
    """Bad policy configuration: unknown backend, bad sampling settings, unusable model."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; the defaults are OEL's rollout and evaluation settings, written only here: the other
    sampling defaults (the `oel play` / `oel eval` flags, the rollout, evaluation and run-file configs) are
    read from this class or `DEFAULT_SAMPLING`."""

    temperature: float = 0.7
    """Softmax temperature T; 0 means greedy decoding."""
    top_p: float = 0.8
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1.0 = off)."""
    top_k: int = 20
    """Keep only the k most likely tokens before top_p (0 = off)."""
    max_new_tokens: int = 128
    """Upper bound on generated tokens per completion; hitting it gives finish_reason 'length'."""
    seed: int | None = None
    """Seed for the sampler, for reproducible batches; None draws fresh randomness."""

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise PolicyError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise PolicyError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise PolicyError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise PolicyError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax."""
        return self.temperature == 0


DEFAULT_SAMPLING = SamplingParams()
"""The default sampling settings, for defaults that are single fields (command-line flags, flat configs)."""


@dataclass
class Completion:
    """One generated reply, with everything a trainer needs to score it again."""

    text: str
    """The reply text, special tokens removed."""
    token_ids: list[int] | None
    """Generated token ids, unpadded, up to and including the end-of-sequence token; None if unknown."""
    logprobs: list[float] | None
    """Per generated token, log_softmax(logits / T)[token] over the full vocabulary; None if unknown."""
    prompt_ids: list[int] | None
    """The exact prompt token ids (chat template applied), unpadded; None if unknown."""
    finish_reason: str | None
    """'stop' (end-of-sequence token), 'length' (max_new_tokens reached), or None if unknown."""
    latency_s: float
    """Wall-clock seconds of the batched call that produced this completion (shared by the batch)."""
    prompt_computed: int | None = None
    """Prompt tokens actually run through the model (the rest came from a prefix cache); None if unknown."""


@dataclass
class ScoredPrompt:
    """The exact log-likelihood of each candidate reply after one prompt (the scored action mode)."""

    prompt_ids: list[int]
    """The exact prompt token ids (chat template applied)."""
    candidate_ids: list[list[int]]
    """Per candidate, its reply tokens: the command's tokens and the end-of-turn token."""
    token_logprobs: list[list[float]]
    """Per candidate, log_softmax(logits)[token] of each of its tokens at T = 1, full vocabulary."""
    prompt_computed: int
    """Prompt tokens actually run through the model (the rest came from a prefix cache)."""
    latency_s: float
    """Wall-clock seconds of the batched call (shared by the batch)."""

    @property
    def scores(self) -> list[float]:
        """Per candidate, the sum of its token log-probabilities: log P(reply = candidate | prompt)."""
        return [sum(lps) for lps in self.token_logprobs]


@runtime_checkable
class Policy(Protocol):
    """Anything that turns a batch of conversations into completions."""

    name: str
    """A short label for logs and the store, e.g. 'hf:SmolLM2-135M-Instruct'."""
    tokenizer: Any
    """The HF tokenizer that produced the token ids, or None for backends without token access."""
    can_score: bool
    """Whether the backend can score given continuations exactly (the scored action mode needs it)."""

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        """Return one completion per conversation, in order."""
        ...


def encode_chat(tokenizer: Any, conversation: Conversation) -> list[int]:
    """Prompt token ids for one conversation: chat template with the assistant turn opened."""
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_token_ids(tokenizer: Any, model_config: Any = None) -> set[int]:
    """Every token id that ends a completion (tokenizer EOS plus the model's generation EOS list)."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    if not ids:
        raise PolicyError("the tokenizer defines no end-of-sequence token")
    return ids


def cut_at_eos(token_ids: Sequence[int], eos_ids: set[int]) -> tuple[list[int], str]:
    """Keep tokens up to and including the first EOS; report 'stop' if one was found, else 'length'."""
    for i, tok in enumerate(token_ids):
        if tok in eos_ids:
            return list(token_ids[: i + 1]), "stop"
    return list(token_ids), "length"
