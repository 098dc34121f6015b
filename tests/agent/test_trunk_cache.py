"""The trunk cache equals the plain forward: the learner's log pi and gradients, the policy's scores.

Prompts here share a long first part (like the chat template and role line
every real prompt starts with), so the batch's common prefix is computed once
through the frozen blocks and once through the top ones; candidates share a
first token, like "[" before every grid move. Everything is compared with the
code that has no cache (`distill.candidates`, `HFPolicy.score` without
`trunk_layers`) to 1e-4.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_llama

from agent.hf_policy import HFPolicy
from agent.trunk_cache import TrunkCache, scored_row, shared_prefix
from distill.candidates import ScoredState, candidate_log_pi
from distill.students import train_top_layers


def _states(n: int, k: int = 4) -> list[ScoredState]:
    g = torch.Generator().manual_seed(0)
    common = torch.randint(5, 90, (12,), generator=g).tolist()
    out = []
    for i in range(n):
        prompt = common + torch.randint(5, 90, (3 + i,), generator=g).tolist()
        cands = [[3, 10 + j, 4, 2] if j else [3, 10, 2] for j in range(k)]  # a shared first token
        out.append(ScoredState(f"s{i}", prompt, [f"c{j}" for j in range(k)], cands, 0, [0.0] * k, 1.0))
    return out


def test_shared_first_tokens_move_into_the_trunk():
    assert shared_prefix([[3, 10, 4], [3, 11, 4]]) == 1
    assert shared_prefix([[3, 10], [3, 10, 4]]) == 1  # every candidate keeps a token of its own
    assert shared_prefix([[3, 10]]) == 0
    row = scored_row([1, 2], [[3, 10, 4], [3, 11, 4]])
    assert row.trunk == [1, 2, 3] and row.branches == [[10, 4], [11, 4]]


def test_the_learners_log_pi_and_gradients_equal_the_full_forward():
    states = _states(5)
    temps = [1.0, 0.5, 2.0, 1.0, 1.0]
    full, cached = tiny_llama(num_hidden_layers=4), tiny_llama(num_hidden_layers=4)
    prompts, candidates = [s.prompt_ids for s in states], [s.candidate_ids for s in states]
    outs, grads = [], []
    for model in (full, cached):
        train_top_layers(model, 2)
        if model is full:
            log_pi = candidate_log_pi(model, prompts, candidates, temps, 0)
        else:
            cache = TrunkCache(model, 2, 0, chunk=2)  # two fills: the common prefix is found per chunk
            log_pi = cache.log_pi(states, temps)
            assert (cache.misses, cache.hits) == (5, 0)
        sum(lp[i % 4] for i, lp in enumerate(log_pi)).backward()
        outs.append([lp.detach() for lp in log_pi])
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    for a, b in zip(*outs, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    cache.log_pi(states[:3], temps[:3])
    assert cache.hits == 3 and cache.misses == 5  # the second pass reads the cache


@pytest.fixture(scope="module")
def policies(tiny_path):
    return HFPolicy(tiny_path, device="cpu"), HFPolicy(tiny_path, device="cpu", trunk_layers=1)


def test_the_policys_scores_through_the_cache_equal_its_plain_scores(policies):
    plain, trunk = policies
    boards = [f"Board {i}: P . H\n. . G\nWhere to?" for i in (0, 1, 2, 1)]
    conversations = [[{"role": "user", "content": board}] for board in boards]
    commands = [["[up]", "[down]", "[left]", "[right]"]] * 4
    first = trunk.score(conversations, commands)
    again = trunk.score(conversations[:2], commands[:2])
    reference = plain.score(conversations, commands)
    for got, want in zip(first, reference, strict=True):
        assert got.candidate_ids == want.candidate_ids
        for a, b in zip(got.token_logprobs, want.token_logprobs, strict=True):
            assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4
    assert first[0].prompt_computed > 0 and again[0].prompt_computed == 0  # seen: only the top block ran
    assert first[3].token_logprobs == first[1].token_logprobs and trunk._trunk.misses == 3  # a copy runs once
    assert [s.token_logprobs for s in again] == [s.token_logprobs for s in first[:2]]


def test_a_policy_forgets_its_cache_when_the_frozen_blocks_change(tiny_path):
    policy = HFPolicy(tiny_path, device="cpu", trunk_layers=1)
    conversation = [[{"role": "user", "content": "Board: P . H\nWhere to?"}]]
    before = policy.score(conversation, [["[up]", "[down]"]])[0].token_logprobs
    with torch.no_grad():
        policy.model.base_model.layers[0].mlp.up_proj.weight.mul_(1.5)  # the frozen block changes
    after = policy.score(conversation, [["[up]", "[down]"]])[0]
    plain = HFPolicy.from_model(policy.model, policy.tokenizer).score(conversation, [["[up]", "[down]"]])[0]
    assert after.token_logprobs != before and after.prompt_computed > 0
    for a, b in zip(after.token_logprobs, plain.token_logprobs, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4


def test_the_learner_finds_what_the_policy_played_already_computed(tiny_path):
    """The same frozen blocks (another copy of the checkpoint) share the cache: training fills nothing."""
    from agent.model import load_model

    policy = HFPolicy(tiny_path, device="cpu", trunk_layers=1)
    conversations = [[{"role": "user", "content": f"Board {i}: . P H\nWhere to?"}] for i in range(3)]
    played = policy.score(conversations, [["[up]", "[down]"]] * 3)
    student, _tokenizer = load_model(tiny_path)
    train_top_layers(student, 1)
    learner = TrunkCache(student, 1, policy.pad_id)
    states = [ScoredState("s", p.prompt_ids, ["[up]", "[down]"], p.candidate_ids, 0, [0.0, 0.0], 1.0)
              for p in played]  # fmt: skip
    log_pi = learner.log_pi(states, [1.0] * 3)
    assert (learner.misses, learner.hits) == (0, 3)
    for lp, p in zip(log_pi, played, strict=True):
        scores = torch.tensor([sum(t) for t in p.token_logprobs])
        assert torch.allclose(lp.detach(), torch.log_softmax(scores, 0), atol=1e-4)


def test_a_trunk_differing_in_one_weight_gets_cache_entries_of_its_own():
    # a ternary student's next checkpoint differs from its last in a few flipped codes: one weight here
    states = _states(2)
    model = tiny_llama(num_hidden_layers=4)
    before = TrunkCache(model, 2, 0)
    before.log_pi(states, [1.0, 1.0])
    with torch.no_grad():
        weight = model.base_model.layers[0].mlp.down_proj.weight
        weight.view(-1)[weight.numel() // 2 + 1] += 0.5  # off any strided sample of the tensor
    after = TrunkCache(model, 2, 0)
    assert after.store is not before.store
    after.log_pi(states, [1.0, 1.0])
    assert (after.misses, after.hits) == (2, 0)  # computed again, not served the old weights' outputs


def test_a_ternary_students_frozen_trunk_is_cached_and_equals_its_full_forward():
    # the student trains its top blocks on its own frozen ternary bottom (distill.job with a ternary student)
    from distill.ternary import convert

    states, temps = _states(3), [1.0, 1.0, 1.0]
    full, cached = (convert(tiny_llama(num_hidden_layers=4), "2:4") for _ in range(2))
    for model in (full, cached):
        train_top_layers(model, 2)
    want = candidate_log_pi(full, [s.prompt_ids for s in states], [s.candidate_ids for s in states], temps, 0)
    got = TrunkCache(cached, 2, 0).log_pi(states, temps)
    for a, b in zip(want, got, strict=True):
        assert torch.allclose(a.detach(), b.detach(), atol=1e-4)


def test_the_same_weights_as_dense_2of4_and_6of8_trunks_get_cache_entries_of_their_own():
    from distill.ternary import convert

    dense = tiny_llama(num_hidden_layers=4)
    stores = [TrunkCache(dense, 2, 0).store]
    for pattern in ("2:4", "6:8"):
        stores.append(TrunkCache(convert(dense, pattern, inplace=False), 2, 0).store)
    assert len({id(s) for s in stores}) == 3
