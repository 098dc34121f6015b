"""The vllm backend (skipped where vLLM is not installed: `pip install 'oel[vllm]'`).

Log-probs must match the hf backend's definition, log_softmax(logits / T) over
the full vocabulary, so they are checked against a transformers teacher-forced
pass. Both run in fp32, but vLLM's CPU kernels (attention, prepacked GEMM) are
not transformers', so we allow 2e-3 nats per token; a wrong temperature or
top-k/top-p-processed log-probs would be off by far more.
"""

from __future__ import annotations

import pytest
import torch

from agent.model import load_model
from agent.policy import SamplingParams, encode_chat

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def engine(tiny_path):
    from agent.vllm_policy import VLLMPolicy

    return VLLMPolicy(tiny_path, enforce_eager=True)


def assert_matches_teacher_forcing(folder, conversations, completions, temperature):
    model, tokenizer = load_model(folder)
    for conversation, c in zip(conversations, completions, strict=True):
        assert c.prompt_ids == encode_chat(tokenizer, conversation)
        assert tokenizer.decode(c.token_ids, skip_special_tokens=True) == c.text
        assert len(c.logprobs) == len(c.token_ids) >= 1
        ids = torch.tensor([c.prompt_ids + c.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(c.prompt_ids) - 1 : -1].float()
        logp = torch.log_softmax(logits / temperature, -1)
        expected = logp.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
        assert torch.allclose(expected, torch.tensor(c.logprobs), atol=TOLERANCE, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_logprobs_match_hf_definition(engine, tiny_path, conversations, temperature):
    params = SamplingParams(temperature=temperature, max_new_tokens=10, seed=5)
    completions = engine.generate(conversations, params)
    assert_matches_teacher_forcing(tiny_path, conversations, completions, temperature)
    again = engine.generate(conversations, params)
    assert [c.token_ids for c in again] == [c.token_ids for c in completions]


@pytest.mark.slow
def test_reload_serves_new_weights_only(engine, tiny_path, tiny_path_b, conversations):
    params = SamplingParams(temperature=0, max_new_tokens=8)
    engine.generate(conversations, params)  # fill the prefix cache with the old weights
    engine.reload(tiny_path_b)
    try:
        completions = engine.generate(conversations, params)
        assert_matches_teacher_forcing(tiny_path_b, conversations, completions, 1.0)
    finally:
        engine.reload(tiny_path)


@pytest.mark.slow
def test_smollm2_on_vllm(smollm_path, conversations):
    from agent.vllm_policy import VLLMPolicy

    policy = VLLMPolicy(smollm_path, enforce_eager=True)
    completions = policy.generate(conversations, SamplingParams(max_new_tokens=16, seed=0))
    assert_matches_teacher_forcing(smollm_path, conversations, completions, 0.7)
