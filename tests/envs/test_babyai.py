"""BabyAI-Text: contract, determinism, splits, a scripted solver's wins, invalid actions, the description.

The solver is minigrid's own BabyAIBot, reading the level's state; its actions
are translated to our commands and played through the text environment, which
must report the win. Where the description is checked, the expected phrase is
computed from minigrid's world coordinates and its `agent_sees` (which decodes
minigrid's image encoding), independently of how envs.babyai reads the view.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("minigrid")

from minigrid.utils.baby_ai_bot import BabyAIBot  # noqa: E402

from envs.babyai import LEVELS, BabyAIOptionsError, BabyAITextEnv  # noqa: E402
from envs.babyai.describe import Cell, View, describe, outcome_line, seen_line, wall_line  # noqa: E402
from envs.babyai.env import ADMISSIBLE, COMMANDS, instance_key  # noqa: E402
from envs.splits import SEED_BASES, SPLITS, SplitError, split_of_seed, task_split  # noqa: E402

TEST_ID = "oel/BabyAI-GoToLocal-v0"
if TEST_ID not in gymnasium.registry:
    gymnasium.register(
        TEST_ID, entry_point="envs.babyai.env:BabyAITextEnv", kwargs={"level": "BabyAI-GoToLocal-v0"}
    )
COMMAND_OF_ACTION = {action: command for command, action in COMMANDS.items()}


def play_bot(env: BabyAITextEnv, seed: int) -> tuple[list[str], list[str], float, dict]:
    """Play BabyAIBot's actions as commands; return commands, observations, last reward and info."""
    _, info = env.reset(seed=seed)
    bot = BabyAIBot(env.level_env)
    commands, observations = [], []
    done = False
    while not done:
        command = COMMAND_OF_ACTION[bot.replan().name]
        observation, reward, terminated, truncated, info = env.step(command)
        commands.append(command)
        observations.append(observation)
        done = terminated or truncated
    return commands, observations, reward, info


@pytest.mark.parametrize("level", ["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-PutNextLocal-v0",
                                   "BabyAI-OpenDoor-v0"])  # fmt: skip
def test_check_env_passes(level):
    env = BabyAITextEnv(level=level)
    check_env(env, skip_render_check=True)
    observation, info = env.reset(seed=0)
    assert observation in env.observation_space
    assert info["admissible_commands"] == ADMISSIBLE and info["max_score"] == 1.0
    assert info["task_id"].startswith(level + ":")


def test_same_split_and_seed_replay_the_same_episode():
    commands = ["turn left", "go forward", "go forward", "pick up", "turn right", "go forward", "toggle"]

    def episode(split, seed):
        env = BabyAITextEnv(split=split)
        observation, info = env.reset(seed=seed)
        out = [observation, info["task_id"]]
        for command in commands:
            observation, _, terminated, truncated, _ = env.step(command)
            out.append(observation)
            if terminated or truncated:
                break
        return out

    assert episode("val", 7) == episode("val", 7)
    assert episode("val", 7)[1] != episode("val", 8)[1]
    assert episode("train", 7)[1] != episode("test", 7)[1]


def test_splits_never_share_an_instance_and_seeds_stay_in_range():
    tasks = {}
    for split in SPLITS:
        env = gymnasium.make(TEST_ID, split=split)
        tasks[split] = set()
        for seed in range(30):
            _, info = env.reset(seed=seed)
            assert split_of_seed(info["seed"]) == split and info["seed"] == SEED_BASES[split] + seed
            assert task_split(instance_key(env.unwrapped.level_env)) == split
            tasks[split].add(info["task_id"])
        assert len(tasks[split]) >= 28  # tens of millions of instances: repeats are rare
    assert not tasks["train"] & tasks["val"] and not tasks["train"] & tasks["test"]
    assert not tasks["val"] & tasks["test"]
    _, info = BabyAITextEnv(split="test").reset()
    assert split_of_seed(info["seed"]) == "test"


@pytest.mark.parametrize("split, seed", [("train", s) for s in range(5)] + [("test", s) for s in range(3)])
def test_scripted_solver_wins_gotolocal_with_minigrids_reward(split, seed):
    env = BabyAITextEnv(split=split)
    commands, observations, reward, info = play_bot(env, seed)
    assert info["won"] and not info["lost"] and reward > 0
    assert info["score"] == reward == pytest.approx(1 - 0.9 * len(commands) / 64)
    assert env.level_env.step_count == len(commands)  # no invalid step: minigrid's own reward
    assert reward == pytest.approx(1 - 0.9 * env.level_env.step_count / env.level_env.max_steps)
    assert "You completed the mission" in info["feedback"] and info["feedback"] in observations[-1]
    assert "Steps left" not in observations[-1]
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("turn left")


@pytest.mark.parametrize("level", LEVELS)
def test_every_supported_level_is_won_by_the_scripted_solver(level):
    env = BabyAITextEnv(level=level, split="val")
    commands, observations, reward, info = play_bot(env, seed=1)
    assert info["won"] and reward > 0, (level, commands[-5:], observations[-1])
    for command, observation in zip(commands, observations, strict=True):
        first = observation.splitlines()[0]
        if command == "pick up" and first.startswith("You picked up the "):
            thing = first.removeprefix("You picked up the ").removesuffix(".")
            assert f"You carry: a {thing}." in observation
    if level.startswith("BabyAI-Open"):
        assert observations[-1].startswith("You opened the ")


def test_description_places_the_goal_object_when_it_is_in_view():
    in_view = 0
    for seed in range(20):
        env = BabyAITextEnv(split="train")
        observation, _ = env.reset(seed=seed)
        level = env.level_env
        seen = next(line for line in observation.splitlines() if line.startswith("You see"))
        for obj in level.instrs.desc.obj_set:
            if not level.agent_sees(*obj.cur_pos):
                continue
            delta = np.asarray(obj.cur_pos) - np.asarray(level.agent_pos)
            forward, right = int(delta @ level.dir_vec), int(delta @ level.right_vec)
            parts = [f"{forward} step{'s' * (forward != 1)} forward"] if forward else []
            if right:
                parts.append(f"{abs(right)} step{'s' * (abs(right) != 1)} {'right' if right > 0 else 'left'}")
            assert f"a {obj.color} {obj.type} {' and '.join(parts)}" in seen, (seed, seen)
            in_view += 1
    assert in_view >= 5


def test_invalid_action_costs_a_step_and_leaves_the_level_alone():
    env = BabyAITextEnv(max_steps=3)
    first, _ = env.reset(seed=4)
    level = env.level_env
    where = (tuple(level.agent_pos), level.agent_dir)
    observation, reward, terminated, truncated, info = env.step("fly to the moon")
    assert (tuple(level.agent_pos), level.agent_dir) == where and level.step_count == 0
    assert observation.startswith("'fly to the moon' is not a valid command. Valid commands: turn left,")
    assert (reward, terminated, truncated, info["steps"]) == (0.0, False, False, 1)
    assert "Steps left: 2." in observation and first.splitlines()[1:-1] == observation.splitlines()[1:-1]
    observation, *_ = env.step("  TURN \t Left ")
    assert observation.startswith("You turned left.") and level.agent_dir == (where[1] - 1) % 4
    observation, reward, terminated, truncated, info = env.step("[Turn right].")
    assert observation.startswith("You turned right.") and level.step_count == 2
    assert truncated and not terminated and not info["won"] and not info["lost"]
    assert info["feedback"] == "You ran out of steps: this level allows at most 3 steps."
    assert info["feedback"] in observation and "Steps left" not in observation


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="call reset"):
        BabyAITextEnv().step("turn left")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"level": "BabyAI-PickupLocal-v0"},
            "unknown BabyAI level 'BabyAI-PickupLocal-v0'; supported: .*GoToLocal",
        ),
        ({"level": "MiniGrid-Empty-5x5-v0"}, "unknown BabyAI level"),
        ({"max_steps": 0}, "max_steps must be"),
        ({"render_mode": "human"}, "render_mode must be None or 'ansi'"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode")  # gymnasium's own warning before ours is raised
def test_bad_options_are_one_line_errors(kwargs, match):
    with pytest.raises(BabyAIOptionsError, match=match) as caught:
        gymnasium.make(TEST_ID, **kwargs)
    assert "\n" not in str(caught.value)


def test_unknown_split_is_rejected():
    with pytest.raises(SplitError, match="unknown split 'dev'"):
        BabyAITextEnv(split="dev")


def test_playing_opens_no_window_and_ansi_shows_the_full_map():
    import pygame

    env = BabyAITextEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step("go forward")
    assert not pygame.display.get_init()
    assert env.render().count("\n") == env.level_env.height - 1


def test_describe_orders_objects_and_names_walls_door_states_and_load():
    view = View(
        things={
            (3, 0): Cell("door", "blue", "closed"),
            (1, -1): Cell("ball", "red"),
            (2, 2): Cell("door", "grey", "open"),
            (4, 0): Cell("wall", "grey"),
            (0, -2): Cell("wall", "grey"),
            (0, -3): Cell("wall", "grey"),
            (1, 3): Cell("wall", "grey"),
        },
        carried=Cell("key", "yellow"),
    )
    assert seen_line(view) == (
        "You see: a red ball 1 step forward and 1 step left; a closed blue door 3 steps forward; "
        "an open grey door 2 steps forward and 2 steps right."
    )
    assert wall_line(view) == "Walls: 4 steps forward, 2 steps left."
    lines = describe(view, "open the blue door")
    assert lines[0] == "Your mission: open the blue door"
    assert lines[3:] == ["In front of you: empty floor.", "You carry: a yellow key."]
    assert wall_line(View()) == "Walls: none in sight straight ahead, left or right."
    assert seen_line(View()) == "You see no objects."


def test_outcome_lines_report_what_changed():
    locked = View(things={(1, 0): Cell("door", "red", "locked")})
    assert outcome_line("toggle", locked, locked) == "Nothing happened: the red door is locked."
    opened = View(things={(1, 0): Cell("door", "red", "open")}, carried=Cell("key", "red"))
    assert outcome_line("toggle", locked, opened) == "You unlocked and opened the red door."
    assert (
        outcome_line("go forward", locked, locked)
        == "You could not move forward: a locked red door is in front of you."
    )
    box = View(things={(1, 0): Cell("box", "green")})
    assert outcome_line("toggle", box, View()) == "You opened the green box: it was empty."
    ball = View(things={(1, 0): Cell("ball", "blue")})
    assert outcome_line("pick up", ball, View(carried=Cell("ball", "blue"))) == "You picked up the blue ball."
    assert (
        outcome_line("drop", View(carried=Cell("ball", "blue")), ball)
        == "You dropped the blue ball in front of you."
    )
    assert outcome_line("drop", View(), View()) == "Nothing happened: you carry nothing."
    assert outcome_line("go forward", View(position=(1, 1)), View(position=(2, 1))) == "You moved forward."
