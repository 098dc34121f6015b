"""The vllm backend (skipped where vLLM is not installed: `pip install 'oel[vllm]'`).

Log-probs must match the hf backend's definition, log_softmax(logits / T) over
the full vocabulary, so they are checked against a transformers teacher-forced
pass (`logprob_checks`: fp32 on both sides, 2e-3 nats per token allowed for
vLLM's own CPU kernels; a wrong temperature or top-k/top-p-processed
log-probs would be off by far more).
"""

from __future__ import annotations

import pytest
from logprob_checks import assert_matches_teacher_forcing

from agent.policy import SamplingParams

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def engine(tiny_path):
    from agent.vllm_policy import VLLMPolicy

    return VLLMPolicy(tiny_path, enforce_eager=True)


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
