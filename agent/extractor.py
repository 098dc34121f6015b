"""Wiring an LLM into knowledge extraction: a Policy adapted to `memory.knowledge.TextGenerator`.

`memory` defines the tiny contract (prompts in, texts out) and cannot import
`agent`; this module is the adapter that lives above it. By default the
extractor is the deployed policy itself (OEL: the knowledge source should be
on-policy with the model that reads it), so no second model is loaded. A
different local model (`--extractor-model PATH`, `hf` or `vllm` backend) or
any LangChain chat model (`langchain` backend, an import spec; see
`agent.langchain_policy`) can replace it.

The extractor samples with OEL's extraction settings (T=0.7, top_p=0.8,
top_k=20); only the reply budget changes per call.
"""

from __future__ import annotations

import dataclasses

from agent.backends import make_policy
from agent.policy import Policy, PolicyError, SamplingParams
from memory.knowledge.generator import TokenCounter, tokenizer_counter


class PolicyTextGenerator:
    """A Policy seen as a `TextGenerator`: each prompt becomes a one-turn user conversation."""

    def __init__(self, policy: Policy, sampling: SamplingParams | None = None) -> None:
        self.policy = policy
        self.sampling = sampling or SamplingParams()
        self.name = policy.name

    def generate_texts(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """One batched `policy.generate` over all prompts; return the reply texts in order."""
        params = dataclasses.replace(self.sampling, max_new_tokens=max_new_tokens)
        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        return [completion.text for completion in self.policy.generate(conversations, params)]


def make_extractor(
    policy: Policy | None, model: str | None = None, backend: str = "hf"
) -> tuple[PolicyTextGenerator, Policy]:
    """The extractor: `policy` itself when `model` is None, else a policy built from `model` on `backend`.

    Return (generator, the policy behind it).
    """
    if model is None:
        if policy is None:
            raise PolicyError("no extractor: give a policy or --extractor-model")
        return PolicyTextGenerator(policy), policy
    extractor = make_policy(backend, model)
    return PolicyTextGenerator(extractor), extractor


def policy_token_counter(policy: Policy | None) -> TokenCounter | None:
    """Exact token counts with the policy's tokenizer, or None when it has none (the cap then estimates)."""
    tokenizer = getattr(policy, "tokenizer", None)
    return tokenizer_counter(tokenizer) if tokenizer is not None else None
