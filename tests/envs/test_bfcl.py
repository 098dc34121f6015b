"""BFCL multi-turn: the ground truth played through the environment wins, broken sequences lose, and the
judge agrees with bfcl-eval's own multi-turn checker; splits, options, bad actions and LangChain tools."""

from __future__ import annotations

import decimal
import inspect
import itertools
import json
import sys
import time

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from langchain_core.utils.function_calling import convert_to_openai_tool

pytest.importorskip("bfcl_eval")

from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker as package  # noqa: E402

from envs.bfcl import CATEGORIES, BFCLError, BFCLMultiTurnEnv, Call, judge, load_entries, make_tools  # noqa: E402
from envs.bfcl.backends import MAX_PRECISION, Backends, backend_class  # noqa: E402
from envs.bfcl.env import scenario_key  # noqa: E402
from envs.bfcl.judge import _missing  # noqa: E402
from envs.splits import SPLITS, SplitError, task_split  # noqa: E402

ENV_ID = "oel/BFCL-MultiTurn-v0"
_model_names = itertools.count()


def keywords(entry, call: Call) -> dict:
    """The ground-truth call's arguments by name (a few are positional in the data)."""
    owner = next((f.owner for f in entry.functions if f.name == call.name), None)
    if owner is None:
        return dict(call.kwargs)
    bound = inspect.signature(getattr(backend_class(owner), call.name)).bind(None, *call.args, **call.kwargs)
    return {name: value for name, value in bound.arguments.items() if name != "self"}


def play(env, seed: int, turns) -> tuple[str, float, bool, bool, dict]:
    """Play one call list per turn as `call` actions, answering after each turn; return the last step."""
    obs, info = env.reset(seed=seed)
    entry = env.unwrapped.entries[seed % len(env.unwrapped.entries)]
    assert info["task_id"] == entry.id and info["turns"] == len(turns)
    for calls in turns:
        for call in calls:
            obs, reward, terminated, truncated, info = env.step(
                f"call {call.name} {json.dumps(keywords(entry, call))}"
            )
            assert not terminated and not truncated, obs
            assert obs.startswith(f"{call.name} returned: "), obs
        obs, reward, terminated, truncated, info = env.step("answer done")
    return obs, reward, terminated, truncated, info


def package_verdict(entry, turns) -> dict:
    """bfcl-eval's own multi_turn_checker on the same calls (one call per step, as the environment plays)."""
    test_entry = {
        "id": entry.id,
        "initial_config": entry.initial_config,
        "involved_classes": entry.involved_classes,
    }
    model = [[[str(call)] for call in calls] for calls in turns]
    truth = [[str(call) for call in calls] for calls in entry.ground_truth]
    # the package caches instances by model name and entry id: a fresh name per check keeps checks apart
    return package.multi_turn_checker(
        model, truth, test_entry, entry.category, f"oel_test_{next(_model_names)}"
    )


PACKAGE_KIND = {
    "state": "multi_turn:instance_state_mismatch",
    "response": "multi_turn:execution_response_mismatch",
    "empty": "multi_turn:empty_turn_model_response",
}


@pytest.fixture(scope="module")
def base_env():
    return BFCLMultiTurnEnv(split="test")


def test_check_env_passes(base_env):
    check_env(base_env, skip_render_check=True)


def test_make_through_gymnasium_with_split_and_options():
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="envs.bfcl.env:BFCLMultiTurnEnv")
    env = gymnasium.make(ENV_ID, split="val", category="multi_turn_miss_param", max_calls_per_turn=3)
    obs, info = env.reset(seed=0)
    assert info["split"] == "val" and info["task_id"].startswith("multi_turn_miss_param_")
    assert obs.endswith("Calls left this turn: 3.") and obs in env.observation_space


@pytest.mark.parametrize("split", SPLITS)
def test_ground_truth_played_through_the_env_wins(split):
    env = BFCLMultiTurnEnv(split=split)
    for seed in range(6):
        entry = env.entries[seed]
        obs, reward, terminated, truncated, info = play(env, seed, entry.ground_truth)
        assert terminated and not truncated and reward == 1.0, info["feedback"]
        assert info["won"] and not info["lost"] and info["score"] == info["max_score"] == 1
        assert info["feedback"] == f"All {len(entry.turns)} turns pass BFCL's state and response checks."
        assert info["feedback"] in obs
        assert package_verdict(entry, entry.ground_truth)["valid"]


@pytest.mark.parametrize("category", CATEGORIES[1:])
def test_ground_truth_wins_in_the_other_categories(category):
    env = BFCLMultiTurnEnv(split="train", category=category, max_calls_per_turn=40)
    for seed in range(3):
        entry = env.entries[seed]
        *_, info = play(env, seed, entry.ground_truth)
        assert info["won"], info["feedback"]
        assert package_verdict(entry, entry.ground_truth)["valid"]


def test_skipping_a_state_changing_call_loses_as_the_package_says(base_env):
    entry = base_env.entries[0]
    turn = next(t for t, calls in enumerate(entry.ground_truth) if calls)
    broken = [list(calls) for calls in entry.ground_truth]
    broken[turn] = broken[turn][:-1] or [Call("not_a_function")]
    obs, reward, terminated, truncated, info = play(base_env, 0, broken)
    assert terminated and reward == 0.0 and info["lost"] and not info["won"]
    assert (
        info["feedback"].startswith(f"Turn {turn + 1} of {len(entry.turns)} fails")
        and "\n" not in info["feedback"]
    )
    assert not package_verdict(entry, broken)["valid"]


def test_judge_agrees_with_the_package_on_broken_sequences():
    """Every ground truth with one call dropped (first or last of a turn), or one turn emptied: same verdict,
    same failing check."""
    seen = set()
    for entry in load_entries("multi_turn_base")[:12]:
        variants = []
        for t, calls in enumerate(entry.ground_truth):
            for cut in (calls[1:], calls[:-1], []):
                variants.append([list(c) if i != t else list(cut) for i, c in enumerate(entry.ground_truth)])
        for turns in variants:
            mine, theirs = judge(entry, turns), package_verdict(entry, turns)
            assert mine.won == theirs["valid"], (entry.id, mine)
            if not mine.won:
                assert PACKAGE_KIND[mine.check] == theirs["error_type"], (
                    entry.id,
                    mine,
                    theirs["error_type"],
                )
            seen.add(mine.check)
    assert seen >= {"state", "response", "empty"}


def test_extra_calls_and_wrong_arguments_are_judged_as_the_package_judges_them(base_env):
    entry = base_env.entries[1]
    first = next(c for c in entry.ground_truth[0])
    padded = [[first, *calls] if t == 0 else list(calls) for t, calls in enumerate(entry.ground_truth)]
    wrong = [list(calls) for calls in entry.ground_truth]
    target = next((t, i) for t, calls in enumerate(wrong) for i, c in enumerate(calls) if c.kwargs)
    call = wrong[target[0]][target[1]]
    key = next(iter(call.kwargs))
    wrong[target[0]][target[1]] = Call(call.name, call.args, {**call.kwargs, key: "zz-not-this"})
    for turns in (padded, wrong):
        assert judge(entry, turns).won == package_verdict(entry, turns)["valid"]
    assert not judge(entry, wrong).won


def test_multiset_matching_matches_the_package():
    cases = [
        (["a", "b"], ["b", "a"]),
        (["a", "a"], ["a", "b"]),
        (["a", "a"], ["a", "x", "a"]),
        ([], ["a"]),
        (["c"], []),
    ]
    for expected, actual in cases:
        ok, missing = package._is_subsequence_unordered(expected, actual)
        assert (not _missing(expected, actual)) == ok
        assert [expected[i] for i in _missing(expected, actual)] == missing


def test_reset_is_deterministic_and_seeds_list_the_split(base_env):
    other = BFCLMultiTurnEnv(split="test")
    for seed in (0, 7, 54):
        a, info_a = base_env.reset(seed=seed)
        b, info_b = other.reset(seed=seed)
        assert a == b and info_a["task_id"] == info_b["task_id"]
    n = len(base_env.entries)
    ids = {base_env.reset(seed=s)[1]["task_id"] for s in range(n)}
    assert len(ids) == n and base_env.reset(seed=n)[1]["task_id"] == base_env.reset(seed=0)[1]["task_id"]
    assert base_env.reset(seed=3)[1]["seed"] == base_env.reset(seed=3)[1]["seed"] >= 2**31


def test_splits_are_disjoint_by_scenario_in_every_category():
    per_split = {s: {e.index for e in BFCLMultiTurnEnv(split=s).entries} for s in SPLITS}
    assert sum(len(v) for v in per_split.values()) == len(load_entries("multi_turn_base"))
    assert not (per_split["train"] & per_split["val"]) and not (per_split["train"] & per_split["test"])
    assert not (per_split["val"] & per_split["test"])
    for category in CATEGORIES[1:]:
        test_ids = {e.index for e in BFCLMultiTurnEnv(split="test", category=category).entries}
        assert test_ids == per_split["test"]
    entry = BFCLMultiTurnEnv(split="test").entries[0]
    assert task_split(scenario_key(entry)) == "test"


def test_reset_lists_functions_and_the_first_request(base_env):
    obs, info = base_env.reset(seed=0)
    entry = base_env.entries[0]
    assert "admissible_commands" not in info
    assert info["tools"] == [f.name for f in entry.functions]
    for function in entry.functions:
        assert f"- {function.name}: {function.summary}" in obs
    assert f"Turn 1 of {len(entry.turns)}. User: {entry.turns[0]}" in obs
    assert "arguments (JSON schema)" in obs and '"type": "dict"' not in obs


def test_bad_actions_are_normal_steps(base_env):
    obs, info = base_env.reset(seed=2)
    obs, reward, terminated, truncated, info = base_env.step("dance wildly")
    assert "That is not an action" in obs and not terminated and info["steps"] == 1
    obs, *_ = base_env.step('call no_such_function {"x": 1}')
    assert "there is no function named 'no_such_function'" in obs
    name = info["tools"][0]
    obs, reward, terminated, truncated, info = base_env.step(f'call {name} {{"bogus_argument": 1}}')
    assert obs.startswith(f"{name} returned: Error during execution: ") and "bogus_argument" in obs
    assert not terminated and not truncated and obs.endswith("Calls left this turn: 7.")


def test_too_many_actions_in_a_turn_truncate():
    env = BFCLMultiTurnEnv(split="train", max_calls_per_turn=2)
    env.reset(seed=0)
    env.step("call nothing {}")
    obs, *_ = env.step("not an action")
    assert obs.endswith("No calls left this turn: answer now.")
    obs, reward, terminated, truncated, info = env.step("call nothing {}")
    assert truncated and not terminated and not info["won"] and not info["lost"]
    assert (
        info["feedback"] == "You ran out of actions in turn 1 without answering." and info["feedback"] in obs
    )
    with pytest.raises(RuntimeError, match="reset"):
        env.step("answer too late")


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        BFCLMultiTurnEnv().step("answer hello")


def test_miss_func_holds_functions_back_until_their_turn():
    env = BFCLMultiTurnEnv(split="train", category="multi_turn_miss_func")
    entry = env.entries[0]
    (name, turn), *_ = entry.held_out.items()
    obs, info = env.reset(seed=0)
    assert name not in info["tools"] and f"- {name}:" not in obs
    for _ in range(turn):
        obs, reward, terminated, truncated, info = env.step("answer ok")
    assert name in info["tools"] and "New functions you can call:" in obs and f"- {name}:" in obs
    assert "I have updated some more functions" in obs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"category": "multi_turn_composite"}, "unknown BFCL category 'multi_turn_composite'; choose one of"),
        ({"max_calls_per_turn": 0}, "max_calls_per_turn must be an integer of at least 1, got 0"),
        ({"render_mode": "human"}, "render_mode must be None"),
    ],
)
def test_bad_options_raise_one_line(kwargs, message):
    with pytest.raises(BFCLError) as err:
        BFCLMultiTurnEnv(**kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_split_raises_split_error():
    with pytest.raises(SplitError, match="unknown split"):
        BFCLMultiTurnEnv(split="dev")


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "bfcl_eval", None)
    with pytest.raises(BFCLError) as err:
        BFCLMultiTurnEnv()
    assert str(err.value) == (
        "the BFCL environment needs the bfcl-eval package: pip install --no-deps bfcl-eval==2026.3.23"
    )


def test_langchain_tools_execute_on_the_episode_and_count_for_the_judge(base_env):
    entry = base_env.entries[4]
    base_env.reset(seed=4)
    for t, calls in enumerate(entry.ground_truth):
        tools = {tool.name: tool for tool in make_tools(base_env.offered, base_env.call)}
        assert set(tools) == {f.name for f in entry.offered(t)}
        for call in calls:
            result = tools[call.name].invoke(keywords(entry, call))
            assert isinstance(result, str) and not result.startswith("Error during execution")
        obs, reward, terminated, truncated, info = base_env.step("answer done")
    assert terminated and info["won"], info["feedback"]
    schema = convert_to_openai_tool(tools[entry.functions[0].name])["function"]
    assert schema["parameters"] == entry.functions[0].parameters
    assert schema["description"] == entry.functions[0].description


def test_math_guards_keep_the_process_responsive_and_its_decimal_context():
    entry = next(e for e in load_entries("multi_turn_base") if "MathAPI" in e.involved_classes)
    backends = Backends(entry)
    precision = decimal.getcontext().prec
    start = time.perf_counter()
    huge = backends.execute(Call("logarithm", (), {"value": 10, "base": 2, "precision": 10**7}))
    power = backends.execute(Call("power", (), {"base": 10, "exponent": 10**12}))
    assert time.perf_counter() - start < 1.0
    assert huge.startswith("Error during execution: logarithm: precision") and str(MAX_PRECISION) in huge
    assert power.startswith("Error during execution: power: the result would have more than")
    root = backends.execute(Call("square_root", (), {"number": 2, "precision": 30}))
    assert (
        root == "{'result': Decimal('1.41421356237309504880168872421')}"
    )  # str() of a dict JSON cannot take
    assert decimal.getcontext().prec == precision


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_ground_truth_passes_the_judge(category):
    failures = [entry.id for entry in load_entries(category) if not judge(entry, entry.ground_truth).won]
    assert failures == []


def test_calls_never_share_argument_objects_with_the_backends():
    """TwitterAPI keeps the list passed as `mentions` and extends it later; if the recorded call shared it,
    the judge would replay a mutated call. Entry 147 posts a tweet, then mentions users in it."""
    entry = next(e for e in load_entries("multi_turn_base") if e.id == "multi_turn_base_147")
    env = BFCLMultiTurnEnv(split=task_split(scenario_key(entry)))
    seed = env.entries.index(entry)
    before = [[str(call) for call in calls] for calls in entry.ground_truth]
    for _ in range(2):
        *_, info = play(env, seed, entry.ground_truth)
        assert info["won"], info["feedback"]
    assert judge(entry, entry.ground_truth).won
    assert [[str(call) for call in calls] for calls in entry.ground_truth] == before


@pytest.mark.slow
@pytest.mark.parametrize("category", CATEGORIES)
def test_judge_agrees_with_the_package_on_every_entry(category):
    for entry in load_entries(category):
        for t, calls in enumerate(entry.ground_truth):
            for cut in (calls[1:], calls[:-1]) if calls else ():
                turns = [list(c) if i != t else list(cut) for i, c in enumerate(entry.ground_truth)]
                mine, theirs = judge(entry, turns), package_verdict(entry, turns)
                assert mine.won == theirs["valid"], (entry.id, t, mine)
                assert mine.won or PACKAGE_KIND[mine.check] == theirs["error_type"], (entry.id, t, mine)
