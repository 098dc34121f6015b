"""ScienceWorld environments: the real simulator (one JVM per environment) through the gymnasium wrapper.

One environment per split is made once for the module (starting a JVM takes
about a second); the tests that need Java missing or broken never start one.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

from envs.scienceworld import options, simulator
from envs.scienceworld.env import ScienceWorldEnv
from envs.scienceworld.options import MISSING_PACKAGE, ScienceWorldError
from envs.scienceworld.simulator import java_process
from envs.splits import SEED_BASES, SplitError

ENV_ID = "oel/ScienceWorld-v0"
ART_STUDIO_SEED = 1
"""Train variation 1 of find-living-thing starts in the art studio, whose three look-alike paint cups were
listed in a different order at every reload before the simulator ran with constant identity hashes."""


def _require_java() -> None:
    if shutil.which("java") is None:
        pytest.skip("the simulator needs a Java runtime")


@pytest.fixture(scope="module")
def env():
    _require_java()
    env = ScienceWorldEnv(split="train")
    yield env
    env.close()


@pytest.fixture(scope="module")
def val_env():
    _require_java()
    env = ScienceWorldEnv(split="val")
    yield env
    env.close()


@pytest.fixture(scope="module")
def test_env():
    _require_java()
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="envs.scienceworld.env:ScienceWorldEnv")
    env = gymnasium.make(ENV_ID, split="test")
    yield env.unwrapped
    env.close()


def test_check_env_passes(env):
    check_env(env, skip_render_check=True)


def test_reset_info_names_the_variation_of_the_split_and_lists_commands(env):
    obs, info = env.reset(seed=7)
    assert obs.startswith("Your task is to find a(n) living thing.")
    assert "Commands look like:" in obs and "This room is called" in obs
    assert info["task_id"] == f"scienceworld:find-living-thing:{env.variations['train'][7]}"
    assert (info["seed"], info["split"], info["steps"], info["max_score"]) == (7, "train", 0, 100)
    assert not info["won"] and not info["lost"] and 0 <= info["score"] < 100
    commands = info["admissible_commands"]
    assert commands == sorted(set(commands)) and len(commands) >= 100
    assert {"look around", "inventory"} <= set(commands)
    _, info = env.reset(seed=7 + len(env.variations["train"]))
    assert info["task_id"] == f"scienceworld:find-living-thing:{env.variations['train'][7]}"


def test_reset_is_deterministic_per_seed_even_after_play(env):
    first = env.reset(seed=ART_STUDIO_SEED)
    assert "art studio" in first[0]
    for command in [c for c in first[1]["admissible_commands"] if not c.startswith("focus")][:3]:
        env.step(command)  # focusing could end the episode; the others change the room
    env.reset(seed=4)
    again = env.reset(seed=ART_STUDIO_SEED)
    assert again == first
    assert env.reset(seed=2)[1]["task_id"] != first[1]["task_id"]


def test_splits_are_scienceworlds_variation_splits_and_disjoint(env, val_env, test_env):
    train, val, test = (set(env.variations[s]) for s in ("train", "val", "test"))
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    assert val_env.variations == env.variations == test_env.variations
    _, info = val_env.reset(seed=0)
    assert info["task_id"] == f"scienceworld:find-living-thing:{val_env.variations['val'][0]}"
    assert info["split"] == "val" and info["seed"] == SEED_BASES["val"]
    _, test_info = test_env.reset(seed=0)
    assert test_info["task_id"] == f"scienceworld:find-living-thing:{test_env.variations['test'][0]}"
    assert len({info["task_id"], test_info["task_id"], env.reset(seed=0)[1]["task_id"]}) == 3


def test_gold_walkthrough_wins_with_full_score(env):
    obs, info = env.reset(seed=0, options={"gold": True})
    start, gold = info["score"], info["gold_actions"]
    assert gold and not info["won"]
    total, terminated = 0.0, False
    for step, command in enumerate(gold, 1):
        assert not terminated
        obs, reward, terminated, truncated, info = env.step(command)
        total += reward
        assert info["steps"] == step and not truncated
    assert terminated and info["won"] and not info["lost"]
    assert info["score"] == 100 and total == 100 - start
    assert info["feedback"].startswith("Won:") and obs.endswith(info["feedback"])
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look around")


def test_invalid_action_is_a_normal_step_that_shows_the_command_forms(env):
    _, before = env.reset(seed=3)
    obs, reward, terminated, truncated, info = env.step("fly to the moon")
    assert "No known action matches that input." in obs and "Commands look like: " in obs
    assert (reward, terminated, truncated, info["steps"]) == (0.0, False, False, 1)
    assert info["admissible_commands"] == before["admissible_commands"]
    assert env.step("")[4]["steps"] == 2


def test_focus_on_the_wrong_object_loses(env):
    _, info = env.reset(seed=3)
    assert "focus on air" in info["admissible_commands"]
    obs, reward, terminated, _, info = env.step("focus on air")
    assert terminated and info["lost"] and not info["won"]
    assert info["score"] == 0 and reward == -float(env.reset(seed=3)[1]["score"])
    assert info["feedback"].startswith("Lost:") and obs.endswith(info["feedback"])


def test_out_of_steps_truncates_and_close_stops_the_jvm(env):
    tool_options = os.environ.get("JAVA_TOOL_OPTIONS")
    short = ScienceWorldEnv(max_steps=2)
    assert os.environ.get("JAVA_TOOL_OPTIONS") == tool_options  # set only while the JVM launched
    process = java_process(short._sim)
    try:
        assert short.reset(seed=ART_STUDIO_SEED) == env.reset(seed=ART_STUDIO_SEED)  # another JVM, same text
        assert short.step("look around")[2:4] == (False, False)
        obs, _, terminated, truncated, info = short.step("look around")
        assert truncated and not terminated
        assert info["feedback"].startswith("Out of steps:") and obs.endswith(info["feedback"])
        with pytest.raises(RuntimeError):
            short.step("look around")
    finally:
        short.close()
    assert process.poll() is not None
    short.close()
    with pytest.raises(RuntimeError, match="closed"):
        short.reset(seed=0)


def _one_line_error(match: str, **kwargs) -> str:
    with pytest.raises(ScienceWorldError, match=match) as caught:
        ScienceWorldEnv(**kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_no_java_is_one_line_at_make_time(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    message = _one_line_error("Java runtime")
    assert "apt-get install default-jre-headless" in message


def test_a_java_that_cannot_start_is_one_line_without_traceback(tmp_path, monkeypatch, capfd):
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error("did not start")
    gc.collect()
    assert "Traceback" not in capfd.readouterr().err


def test_unknown_task_and_bad_options_are_one_line():
    message = _one_line_error("unknown ScienceWorld task 'boill'", task="boill")
    assert "boil" in message and "find-living-thing" in message
    _one_line_error("max_steps", max_steps=0)
    _one_line_error("render_mode", render_mode="human")
    _one_line_error("simplification must be a string", simplification=["easy"])
    with pytest.raises(SplitError):
        ScienceWorldEnv(split="dev")


def test_bad_simplification_is_one_line_and_stops_its_jvm(monkeypatch):
    _require_java()
    stopped = []
    real_stop = simulator.stop
    monkeypatch.setattr(simulator, "stop", lambda sim: (stopped.append(java_process(sim)), real_stop(sim)))
    message = _one_line_error("Unknown simplification: 'bogus'", simplification="bogus")
    assert "teleportAction" in message
    assert len(stopped) == 1 and stopped[0].poll() is not None


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "scienceworld.constants", None)
    assert _one_line_error("scienceworld") == MISSING_PACKAGE


def test_task_names_come_from_the_package():
    names = options.task_names()
    assert len(names) == 30 and {"boil", "find-living-thing", "grow-plant"} <= set(names)


def test_the_scored_mode_plays_hundreds_of_commands_in_waves(tmp_path, tiny_path):
    _require_java()
    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams
    from agent.rollout import RolloutConfig, run_rollouts
    from memory import queries
    from memory.store import ExperienceStore

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="envs.scienceworld.env:ScienceWorldEnv")
    policy = HFPolicy(tiny_path, device="cpu", branch_tokens=64)  # many waves per state
    sampling = SamplingParams(temperature=1.0, seed=0)
    config = RolloutConfig(env_id=ENV_ID, env_kwargs={"max_steps": 2}, episodes=1, batch=1, sampling=sampling,
                           action_mode="scored")  # fmt: skip
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as store:
        run_rollouts(policy, store, config)
        steps = queries.steps(store)
    first = steps.iloc[0]
    commands = first.candidates["commands"]
    assert len(commands) > 100 and first.action in commands  # every valid command was scored
    assert sum(len(ids) for ids in first.candidates["ids"]) > 4 * 64
