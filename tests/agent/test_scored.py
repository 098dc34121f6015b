"""Scored actions and prefix reuse: exact candidate scores, stored distributions, equal outputs with reuse.

The tiny random Llama (SmolLM2's tokenizer) is enough: every check compares
one computation path with another on the same weights, so the numbers need
not mean anything, only agree. Tolerance 1e-4 in fp32, as the issue asks; the
paths differ by float rounding only (measured ~1e-6).
"""

from __future__ import annotations

import math

import pytest
import torch

from agent.forms import ScoredForm, make_form
from agent.kv_forward import Row, branch_logprobs, run_rows
from agent.policy import PolicyError, SamplingParams, encode_chat
from agent.prefix_cache import PrefixCache
from agent.prompts import build_scored_messages
from agent.rollout import RolloutConfig, run_rollouts
from memory import queries
from memory.store import ExperienceStore

TOLERANCE = 1e-4
COMMANDS = ["[up]", "[down]", "[left]", "[right]"]


@pytest.fixture(scope="module")
def policy(tiny_path):
    from agent.hf_policy import HFPolicy

    return HFPolicy(tiny_path, device="cpu")


@pytest.fixture(scope="module")
def fresh(tiny_path):
    """The same weights with prefix reuse off: the reference path."""
    from agent.hf_policy import HFPolicy

    return HFPolicy(tiny_path, device="cpu", prefix_cache_mb=0)


@pytest.fixture
def store(tmp_path):
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as s:
        yield s


def _from_scratch(model, prompt: list[int], reply: list[int]) -> torch.Tensor:
    """Teacher-forced log-probs (T = 1) of `reply` after `prompt`, one unpadded forward, no cache."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + reply])).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(reply)[:, None])[:, 0]


def test_shared_kv_scoring_equals_scoring_each_candidate_from_scratch(policy):
    states = ["A new game begins.\nP . .\nH H .\n. . G", "You moved down.\n. . .\nP H .\n. . G"]
    scored = policy.score([build_scored_messages(s, COMMANDS) for s in states], [COMMANDS, COMMANDS[:2]])
    for result in scored:
        for ids, logprobs in zip(result.candidate_ids, result.token_logprobs, strict=True):
            assert ids[-1] == policy.end_of_reply
            exact = _from_scratch(policy.model, result.prompt_ids, ids)
            assert torch.allclose(exact, torch.tensor(logprobs), atol=TOLERANCE, rtol=0)
    # and through a cached prefix: the second call reuses the whole prompt but its last token
    again = policy.score([build_scored_messages(states[0], COMMANDS)], [COMMANDS])[0]
    assert again.prompt_computed == 1
    assert again.scores == pytest.approx(scored[0].scores, abs=TOLERANCE)


def test_many_candidates_are_scored_in_waves_with_the_prompt_computed_once(tiny_path, fresh):
    from agent.hf_policy import HFPolicy

    waves = HFPolicy(tiny_path, device="cpu", branch_tokens=7)  # about two candidates per wave
    commands = [f"go to room {i}" for i in range(9)] + ["look"]
    states = ["You are in the hall.", "You are in the kitchen. A door leads north."]
    conversations = [build_scored_messages(s, commands) for s in states]
    chunked = waves.score(conversations, [commands, commands[:3]])
    whole = fresh.score(conversations, [commands, commands[:3]])
    for got, ref in zip(chunked, whole, strict=True):
        assert got.candidate_ids == ref.candidate_ids
        assert got.scores == pytest.approx(ref.scores, abs=TOLERANCE)
    # later waves find the prompt cached: one prompt token each (the first wave computes the prompt)
    n_waves = math.ceil(sum(len(c) for c in chunked[0].candidate_ids) / 7)
    assert n_waves >= 4
    assert len(chunked[0].prompt_ids) < chunked[0].prompt_computed <= len(chunked[0].prompt_ids) + 2 * n_waves


def test_branches_see_the_prompt_but_not_each_other(policy):
    prompt = encode_chat(policy.tokenizer, build_scored_messages("state", COMMANDS))
    ids = [policy.candidate_ids(c) for c in COMMANDS]
    together = run_rows(policy.model, [Row(trunk=prompt, branches=ids)])
    alone = [run_rows(policy.model, [Row(trunk=prompt, branches=[c])]) for c in ids]
    with torch.no_grad():
        joint = branch_logprobs(policy.model, together)[0]
        single = [branch_logprobs(policy.model, f)[0][0] for f in alone]
    for a, b in zip(joint, single, strict=True):
        assert torch.allclose(a, b, atol=TOLERANCE, rtol=0)


def test_prefix_reuse_keeps_generation_identical_and_computes_less(policy, fresh, conversations):
    params = SamplingParams(temperature=0.9, max_new_tokens=10, seed=5)
    reference = fresh.generate(conversations, params)
    cold = policy.generate(conversations, params)
    warm = policy.generate(conversations, params)  # every prompt is now cached but its last token
    for ref, got in ((reference, cold), (reference, warm)):
        assert [c.token_ids for c in got] == [c.token_ids for c in ref]
        for a, b in zip(got, ref, strict=True):
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < TOLERANCE
    assert [c.prompt_computed for c in warm] == [1, 1, 1]
    assert sum(c.prompt_computed for c in cold) < sum(len(c.prompt_ids) for c in reference)
    assert [c.prompt_computed for c in reference] == [len(c.prompt_ids) for c in reference]


def test_a_weight_update_empties_the_cache(tiny_path, conversations):
    from agent.hf_policy import HFPolicy
    from agent.model import load_model

    model, tokenizer = load_model(tiny_path)
    policy = HFPolicy.from_model(model, tokenizer)
    params = SamplingParams(temperature=0, max_new_tokens=4)
    policy.generate(conversations[:1], params)
    assert len(policy.prefix_cache) == 1
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # an optimizer step updates in place like this
    (after,) = policy.generate(conversations[:1], params)
    assert after.prompt_computed == len(after.prompt_ids)  # nothing of the old weights was reused
    exact = _from_scratch(model, after.prompt_ids, after.token_ids)
    assert torch.allclose(exact, torch.tensor(after.logprobs), atol=TOLERANCE, rtol=0)


def test_prefix_cache_finds_the_longest_prefix_and_evicts_by_bytes():
    from agent.kv_forward import KVBlock

    def block(n: int) -> KVBlock:
        return KVBlock(torch.arange(n, dtype=torch.float32).view(1, 1, n, 1), torch.zeros(1, 1, n, 1))

    cache = PrefixCache(max_bytes=8 * (40 + 40))  # room for one 40-token and one 40-token entry
    cache.put(list(range(40)), block(40))
    kv, n = cache.longest([*range(37), 99, 100])
    assert n == 37 and kv.keys.flatten().tolist() == list(range(37))
    assert cache.longest([5, 6, 7]) == (None, 0)
    assert cache.longest(list(range(40)), limit=39)[1] == 39
    cache.put(list(range(100, 140)), block(40))
    cache.put(list(range(200, 240)), block(40))  # evicts the oldest
    assert cache.longest(list(range(40)))[1] == 0 and cache.longest(list(range(200, 240)))[1] == 40
    assert cache.nbytes <= cache.max_bytes


def test_scored_rollout_stores_the_distribution_it_sampled(store, policy):
    config = RolloutConfig(episodes=3, batch=3, action_mode="scored", sampling=SamplingParams(seed=0))
    summary = run_rollouts(policy, store, config)
    assert summary.scored_tokens > 0 and summary.prompt_computed < summary.prompt_tokens
    episodes = queries.episodes(store)
    assert set(episodes["action_mode"]) == {"scored"}
    steps = queries.steps(store)
    for row in steps.itertuples(index=False):
        cand = row.candidates
        assert cand["commands"] == COMMANDS and row.action == cand["commands"][cand["chosen"]]
        assert math.isclose(sum(math.exp(x) for x in cand["logprobs"]), 1.0, abs_tol=1e-9)
        assert row.completion_ids == cand["ids"][cand["chosen"]]
        # the stored token log-probs are a teacher-forced recomputation's, and sum to the command's score
        exact = _from_scratch(policy.model, row.prompt_ids, row.completion_ids)
        assert torch.allclose(exact, torch.tensor(row.logprobs), atol=TOLERANCE, rtol=0)
        exact_scores = [float(_from_scratch(policy.model, row.prompt_ids, ids).sum()) for ids in cand["ids"]]
        scores = torch.tensor(exact_scores)
        log_pi = torch.log_softmax(scores / cand["temperature"], 0)
        assert torch.allclose(log_pi, torch.tensor(cand["logprobs"]), atol=TOLERANCE, rtol=0)
    # the episode's computed prompt tokens are the steps', and fewer than it was sent
    assert (episodes["n_prompt_computed"] < episodes["n_prompt_tokens"]).all()


def test_greedy_scoring_is_deterministic_and_takes_the_argmax(store, policy):
    config = RolloutConfig(episodes=2, batch=2, action_mode="scored", sampling=SamplingParams(temperature=0))
    runs = [run_rollouts(policy, store, config) for _ in range(2)]
    first, second = ([e.episode_id for e in r.episodes] for r in runs)
    a = queries.steps(store)
    actions = {eid: list(a[a["episode_id"] == eid]["action"]) for eid in first + second}
    assert [actions[e] for e in first] == [actions[e] for e in second]
    for cand in a["candidates"]:
        assert cand["chosen"] == max(range(len(cand["logprobs"])), key=lambda i: cand["logprobs"][i])


def test_tool_tasks_list_no_commands_so_scored_mode_falls_back_to_text_and_says_so(store, policy):
    config = RolloutConfig(
        env_id="oel/ToolArith-v0", episodes=1, batch=1, action_mode="scored", env_kwargs={"max_steps": 1},
        sampling=SamplingParams(max_new_tokens=4, seed=0),
    )  # fmt: skip
    run_rollouts(policy, store, config)
    assert queries.episodes(store)["action_mode"].tolist() == ["text-fallback"]
    assert queries.steps(store)["candidates"].isna().all()


def test_backends_that_cannot_score_refuse_scored_mode_in_one_line():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from agent.backends import make_policy

    policy = make_policy("langchain", chat_model=FakeListChatModel(responses=["I will go [left] now"]))
    with pytest.raises(PolicyError, match="cannot score candidate actions exactly") as err:
        make_form(policy, "scored")
    assert "\n" not in str(err.value)
    with pytest.raises(PolicyError, match="unknown action mode 'guess'"):
        make_form(policy, "guess")
    # the text form is what such a backend plays: it generates, parses the bracketed command, scores nothing
    form = make_form(policy, "text")
    assert form.mode == "text" and not isinstance(form, ScoredForm)
    [decision] = form.act([(["You stand on ice."], [])], [COMMANDS], None, SamplingParams())
    assert (decision.action, decision.completion_text) == ("[left]", "I will go [left] now")
    assert decision.mode == "text" and decision.candidates is None


def test_the_packed_ternary_student_plays_scored(store, tmp_path, tiny_path):
    from agent.hf_policy import HFPolicy
    from agent.model import load_model
    from distill.ternary import convert, pack_model, save_packed_student

    model, tokenizer = load_model(tiny_path)
    save_packed_student(pack_model(convert(model, "2:4")), tmp_path / "packed")
    tokenizer.save_pretrained(str(tmp_path / "packed"))
    packed = HFPolicy(tmp_path / "packed", device="cpu")
    config = RolloutConfig(episodes=2, batch=2, action_mode="scored", sampling=SamplingParams(seed=1))
    run_rollouts(packed, store, config)
    row = queries.steps(store).iloc[0]
    exact = _from_scratch(packed.model, row["prompt_ids"], row["completion_ids"])
    assert torch.allclose(exact, torch.tensor(row["logprobs"]), atol=TOLERANCE, rtol=0)
