"""Held-out figures over distinct tasks, step accuracy, and what makes two conditions different.

The reference policies (`agent.reference_policy`) play here: they need no
model, and their outcomes are known independently (a solver wins every map
and moves optimally at every step; a blind sequence wins exactly the maps it
wins when played by hand), which is what these checks compare against.
"""

from __future__ import annotations

import gymnasium
import pandas as pd
import pytest

import envs  # noqa: F401
from agent.backends import make_policy
from agent.policy import PolicyError, SamplingParams
from envs.grid.reference import blind_wins, split_levels
from memory import queries
from memory.stats import wilson_interval
from memory.store import ExperienceStore
from oel.evaluation import EvalConfig, EvaluationError, condition_figures, evaluate

LAKE = "oel/FrozenLake-4x4-v0"


@pytest.fixture
def store(tmp_path):
    with ExperienceStore.open(f"sqlite:///{tmp_path}/oel.db") as handle:
        yield handle


def _run(store: ExperienceStore, policy: str, config: EvalConfig, run: str = "ref") -> dict:
    run_id = store.ensure_run(run)
    checkpoint = store.checkpoint_for_path(policy, run_id=run_id)
    return evaluate(
        lambda: make_policy("reference", policy), store, config, run_id=run_id, checkpoint_id=checkpoint
    )


def test_figures_count_each_task_once_with_its_mean_outcome():
    df = pd.DataFrame(
        {
            "seed": [0, 1, 2, 3, 4],
            "task_id": ["a", "a", "b", "b", "c"],
            "won": [True, True, False, True, False],
        }
    )
    figures = condition_figures(df)
    assert (figures["episodes"], figures["wins"], figures["tasks"]) == (5, 3, 3)
    assert figures["task_score"] == pytest.approx(1.5)  # a: 1, b: 1/2, c: 0
    assert figures["pass_rate"] == pytest.approx(0.5) and figures["episode_pass_rate"] == pytest.approx(0.6)
    assert (figures["ci_low"], figures["ci_high"]) == pytest.approx(wilson_interval(1.5, 3))
    # two seeds that drew the same map widen the interval: 3 tasks, not 5 episodes
    assert figures["ci_high"] - figures["ci_low"] > wilson_interval(3, 5)[1] - wilson_interval(3, 5)[0]


def test_the_solver_wins_every_held_out_map_once_with_every_step_optimal(store):
    maps = len(split_levels(LAKE, "test", seeds=200))
    config = EvalConfig(env_id=LAKE, episodes=maps + 12, batch=16, sampling=SamplingParams(temperature=0))
    figures = _run(store, "solver", config)
    assert (figures["episodes"], figures["tasks"], figures["wins"]) == (maps + 12, maps, maps + 12)
    assert figures["pass_rate"] == 1.0 and figures["step_accuracy"] == 1.0
    assert figures["steps_judged"] >= 6 * maps  # every map needs at least 6 moves


def test_a_blind_policy_wins_what_its_sequence_wins_by_hand(store):
    sequence = ["down", "down", "right", "right", "down", "right", "right"]
    levels = split_levels(LAKE, "test", seeds=200)
    config = EvalConfig(env_id=LAKE, episodes=len(levels), batch=32, sampling=SamplingParams(temperature=0))
    figures = _run(store, "blind:" + ",".join(sequence), config)
    assert figures["wins"] == blind_wins(levels, sequence) and figures["tasks"] == len(levels)
    assert 0 < figures["step_accuracy"] < 1


def test_a_condition_is_its_temperature_and_environment_options_too(store):
    config = EvalConfig(env_id=LAKE, episodes=8, batch=8, sampling=SamplingParams(temperature=1.0, seed=0))
    first = _run(store, "random", config)
    assert first["episodes"] == 8
    played = len(store_episodes(store))
    again = _run(store, "random", config)  # the same condition: nothing new is played
    assert again == first and len(store_episodes(store)) == played
    greedy = EvalConfig(env_id=LAKE, episodes=8, batch=8, sampling=SamplingParams(temperature=0))
    _run(store, "random", greedy)  # another temperature: played afresh, not the T=1 episodes reused
    assert len(store_episodes(store)) == played + 8
    seen = EvalConfig(env_id=LAKE, env_kwargs={"neighbours": True}, episodes=8, batch=8,
                      sampling=SamplingParams(temperature=0))  # fmt: skip
    _run(store, "random", seen)
    assert len(store_episodes(store)) == played + 16


def store_episodes(store: ExperienceStore) -> pd.DataFrame:
    return queries.episodes(store)


def test_evaluation_reads_val_or_test_and_refuses_train():
    assert EvalConfig(split="val").split == "val"
    with pytest.raises(EvaluationError, match="not 'train'"):
        EvalConfig(split="train")


def test_the_val_split_never_plays_a_test_map(store):
    config = EvalConfig(
        env_id=LAKE, split="val", episodes=40, batch=20, sampling=SamplingParams(temperature=0)
    )
    val = _run(store, "solver", config)
    test = _run(store, "solver", EvalConfig(env_id=LAKE, episodes=40, batch=20,
                                            sampling=SamplingParams(temperature=0)))  # fmt: skip
    assert val["tasks"] == 36 and test["tasks"] == 40
    tasks = store_episodes(store).groupby("split")["task_id"].apply(set)
    assert not tasks["val"] & tasks["test"]


def test_reference_policy_names_are_checked():
    with pytest.raises(PolicyError, match="solver, random"):
        make_policy("reference", "oracle")
    with pytest.raises(PolicyError, match="unknown move"):
        make_policy("reference", "blind:down,jump")
    env = gymnasium.make("oel/ToolArith-v0")
    obs, _ = env.reset(seed=0)
    with pytest.raises(PolicyError, match="grid games only"):
        make_policy("reference", "solver").generate([[{"role": "user", "content": obs}]], SamplingParams())
