"""The langchain backend and the policy factory."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agent.backends import BACKENDS, backend_class, check_backend, make_policy
from agent.policy import Policy, PolicyError, SamplingParams


def test_fake_chat_model_batch_records_missing_tokens(conversations):
    replies = ["I move [down].", "hello", "answer 5"]
    policy = make_policy("langchain", chat_model=FakeListChatModel(responses=replies))
    assert isinstance(policy, Policy)
    assert policy.tokenizer is None
    completions = policy.generate(conversations, SamplingParams(seed=1))
    assert sorted(c.text for c in completions) == sorted(replies)
    for c in completions:
        assert c.token_ids is None and c.logprobs is None and c.prompt_ids is None
        assert c.latency_s >= 0


def test_langchain_needs_a_chat_model():
    with pytest.raises(PolicyError, match="needs a chat model"):
        make_policy("langchain")
    with pytest.raises(PolicyError, match="package.module:attribute"):
        make_policy("langchain", "some/path")
    with pytest.raises(PolicyError, match="BaseChatModel"):
        make_policy("langchain", chat_model="gpt")
    with pytest.raises(PolicyError, match="not a langchain_core BaseChatModel"):
        make_policy("langchain", "collections:OrderedDict")


def fake_chat() -> FakeListChatModel:
    """A chat model factory for the spec test below."""
    return FakeListChatModel(responses=["[up]"])


def test_langchain_spec_names_a_chat_model_factory(conversations):
    policy = make_policy("langchain", "test_policy_langchain:fake_chat")
    assert policy.name == "langchain:test_policy_langchain:fake_chat" and not policy.can_score
    assert [c.text for c in policy.generate(conversations[:1], SamplingParams())] == ["[up]"]
    with pytest.raises(PolicyError, match="building the chat model .* failed"):
        make_policy("langchain", "langchain_core.language_models.fake_chat_models:FakeListChatModel")


def test_backend_registry_names_every_backend_and_refuses_others():
    assert set(BACKENDS) >= {"hf", "vllm", "langchain"}
    assert backend_class("langchain").__name__ == "LangChainPolicy"
    assert check_backend("hf") == "hf"
    with pytest.raises(PolicyError, match="unknown policy backend 'tgi'; choose one of hf, vllm, langchain"):
        make_policy("tgi")


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2}, {"max_new_tokens": 0}]
)
def test_bad_sampling_params(kwargs):
    with pytest.raises(PolicyError):
        SamplingParams(**kwargs)


def test_oel_defaults():
    p = SamplingParams()
    assert (p.temperature, p.top_p, p.top_k) == (0.7, 0.8, 20)
