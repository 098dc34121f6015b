"""Checks shared by the tests of backends that report log-probs (vllm, openai): an independent teacher-forced
pass with transformers (a uniquely named module, not a conftest).

Log-probs must match the hf backend's definition, log_softmax(logits / T) over the full vocabulary. Both
sides run in fp32, but vLLM's CPU kernels (attention, prepacked GEMM) are not transformers', so 2e-3 nats
per token are allowed; a wrong temperature or top-k/top-p-processed log-probs would be off by far more.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agent.model import load_model
from agent.policy import encode_chat

TOLERANCE = 2e-3


def teacher_forced_logprobs(
    model: Any, prompt_ids: list[int], token_ids: list[int], temperature: float
) -> torch.Tensor:
    """log_softmax(logits / T) of each of `token_ids` after `prompt_ids` and the tokens before it."""
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits / temperature, -1)
    return logp.gather(1, torch.tensor(token_ids)[:, None])[:, 0]


def assert_matches_teacher_forcing(
    folder: str | Path, conversations: Sequence[list[dict[str, str]]], completions: Sequence[Any],
    temperature: float,
) -> None:  # fmt: skip
    """Each completion's prompt ids, text and per-token log-probs are what transformers computes from
    `folder` at `temperature`."""
    model, tokenizer = load_model(folder)
    for conversation, c in zip(conversations, completions, strict=True):
        assert c.prompt_ids == encode_chat(tokenizer, conversation)
        assert tokenizer.decode(c.token_ids, skip_special_tokens=True) == c.text
        assert len(c.logprobs) == len(c.token_ids) >= 1
        expected = teacher_forced_logprobs(model, c.prompt_ids, c.token_ids, temperature)
        assert torch.allclose(expected, torch.tensor(c.logprobs), atol=TOLERANCE, rtol=0)
