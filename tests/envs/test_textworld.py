"""TextWorld environments: real games from TextWorld's generator, played through the gymnasium wrapper.

Games are generated once per session into a private cache (three games, a few
seconds each); every test points OEL_CACHE_DIR at it, so nothing touches the
user's cache and other packages' tests never see it.
"""

from __future__ import annotations

import json
import os
import shutil

import gymnasium
import pytest
import textworld
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import envs  # noqa: F401  (registers the ids)
from envs.cli import app
from envs.tw import games
from envs.tw.games import GameFileError, GameGenerationError, check_game_file, ensure_game
from envs.tw.options import TextWorldOptionError, generator_seed, make_options
from envs.tw.text import clean_command, is_meta_command

QUEST = {"world_size": 3, "nb_objects": 4, "quest_length": 2}


@pytest.fixture(scope="session")
def game_cache(tmp_path_factory):
    """A private cache holding small quest games: index 0 of train and of test."""
    root = tmp_path_factory.mktemp("oel-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OEL_CACHE_DIR", str(root))
        quest = make_options("quest", **QUEST)
        ensure_game("quest", quest, "train", 0)
        ensure_game("quest", quest, "test", 0)
    return root


@pytest.fixture(scope="session")
def cooking_game(game_cache):
    """Cooking game 0 of train, with the default options, in the same cache (the slowest to make)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OEL_CACHE_DIR", str(game_cache))
        return ensure_game("cooking", make_options("cooking"), "train", 0)


@pytest.fixture(autouse=True)
def use_game_cache(game_cache, monkeypatch):
    monkeypatch.setenv("OEL_CACHE_DIR", str(game_cache))
    return game_cache


def make_quest_env(**kwargs):
    return gymnasium.make("oel/TextWorld-Quest-v0", pool_size=1, **QUEST, **kwargs)


def walkthrough(env) -> list[str]:
    """TextWorld's own winning command sequence, from the game's metadata."""
    game = textworld.Game.load(str(env.unwrapped.game_path.with_suffix(".json")))
    return list(game.metadata["walkthrough"])


def test_walkthrough_wins_cooking_game_with_full_score(cooking_game):
    env = gymnasium.make("oel/TextWorld-Cooking-v0", pool_size=1)
    play_walkthrough(env)
    assert env.unwrapped.game_path == cooking_game


def test_walkthrough_wins_quest_with_full_score():
    play_walkthrough(make_quest_env())


def play_walkthrough(env):
    obs, info = env.reset(seed=0)
    assert info["max_score"] > 0 and info["score"] == 0 and not info["won"]
    total = 0.0
    commands = walkthrough(env)
    for i, command in enumerate(commands):
        assert command in info["admissible_commands"], command
        obs, reward, terminated, truncated, info = env.step(command)
        total += reward
        assert terminated == (i == len(commands) - 1)
        assert not truncated
    assert info["won"] and not info["lost"]
    assert info["score"] == info["max_score"] == total
    assert info["feedback"].startswith("Won")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Jericho on the raw, unwrapped game
def test_observations_are_cleaned_of_banner_prompt_and_status():
    env = make_quest_env()
    obs, info = env.reset(seed=0)
    raw_env = textworld.start(str(env.unwrapped.game_path), request_infos=textworld.EnvInfos(score=True))
    raw = raw_env.reset().feedback
    assert "$$$$" in raw and "\n>" in raw  # the raw text really has banner art and a prompt
    assert "$$" not in obs and ">" not in obs and "=-0/" not in obs
    room_line = next(line for line in raw.splitlines() if line.startswith("-= ") and line.endswith(" =-"))
    assert room_line in obs and obs.splitlines()[0][0].isalnum()
    for command in ["look", "xyzzy", *walkthrough(env)]:
        obs, *_ = env.step(command)
        assert obs and obs == obs.strip() and "\n\n\n" not in obs
        assert not any(line.startswith(">") for line in obs.splitlines())
        assert "RESTART" not in obs
    assert obs in env.observation_space


def test_reset_is_deterministic_per_seed_and_invalid_commands_are_normal_steps():
    def play(seed):
        env = make_quest_env()
        trace = [env.reset(seed=seed)]
        for command in ["xyzzy", "quit", "\\q", "", "look", "inventory"]:
            trace.append(env.step(command))
        return trace

    first = play(7)
    assert first == play(7)
    _, reward, terminated, truncated, info = first[1]
    assert (reward, terminated, truncated, info["won"]) == (0.0, False, False, False)
    assert "not available" in first[2][0]  # the interpreter's quit is refused, not executed


def test_step_limit_truncates_with_feedback():
    env = make_quest_env(max_steps=3)
    env.reset(seed=0)
    results = [env.step("look") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]
    assert "feedback" not in results[1][4]
    assert "limit of 3 steps" in results[2][4]["feedback"]
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step("look")


def test_train_val_and_test_splits_never_share_a_game():
    splits = ("train", "val", "test")
    seeds = {split: {generator_seed(split, i) for i in range(1000)} for split in splits}
    assert not seeds["train"] & seeds["test"] and not seeds["train"] & seeds["val"]
    assert not seeds["val"] & seeds["test"]
    envs_ = {split: make_quest_env(split=split) for split in splits}
    infos = {split: env.reset(seed=0)[1] for split, env in envs_.items()}
    assert len({info["task_id"] for info in infos.values()}) == 3
    texts = {env.unwrapped.game_path.with_suffix(".json").read_text() for env in envs_.values()}
    assert len(texts) == 3


def test_generation_is_cached_and_deterministic(monkeypatch, tmp_path, game_cache):
    quest = make_options("quest", **QUEST)
    cached = ensure_game("quest", quest, "train", 0)

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached game was generated again")

    with monkeypatch.context() as mp:
        mp.setattr(games, "generate_game", no_generation)
        assert ensure_game("quest", quest, "train", 0) == cached
        make_quest_env().reset(seed=0)

    monkeypatch.setenv("OEL_CACHE_DIR", str(tmp_path))  # a fresh cache builds the same game again
    again = ensure_game("quest", quest, "train", 0)
    assert again != cached
    described = [json.loads(path.with_suffix(".json").read_text()) for path in (again, cached)]
    assert described[0] == described[1]
    assert (tmp_path / "textworld" / ".home" / "Inform").is_dir()  # Inform7 wrote into the private HOME
    assert os.environ["HOME"] != str(tmp_path / "textworld" / ".home")


def test_interrupted_generation_leaves_no_game(monkeypatch, tmp_path):
    monkeypatch.setenv("OEL_CACHE_DIR", str(tmp_path))

    def half_then_fail(kind, options, split, seed, out):
        out.write_bytes(b"\x08 half a story")
        raise GameGenerationError("interrupted")

    monkeypatch.setattr(games, "generate_game", half_then_fail)
    quest = make_options("quest", **QUEST)
    with pytest.raises(GameGenerationError):
        ensure_game("quest", quest, "train", 5)
    family = games.game_path("quest", quest, "train", 5).parent.parent
    assert list(family.iterdir()) == []


def test_missing_or_corrupt_game_file_names_the_file_and_the_problem(tmp_path, game_cache):
    source = ensure_game("quest", make_options("quest", **QUEST), "train", 0)
    game = tmp_path / "game.z8"

    with pytest.raises(GameFileError, match=f"{game}.*does not exist"):
        gymnasium.make("oel/TextWorld-Quest-v0", game_file=str(game))

    shutil.copy(source, game)
    with pytest.raises(GameFileError, match="game.json does not exist"):
        check_game_file(game)

    shutil.copy(source.with_suffix(".json"), game.with_suffix(".json"))
    data = bytearray(source.read_bytes())
    game.write_bytes(data[: len(data) // 2])
    with pytest.raises(GameFileError, match=f"{game} is corrupt: truncated"):
        gymnasium.make("oel/TextWorld-Quest-v0", game_file=str(game))

    data[len(data) // 2] ^= 0xFF
    game.write_bytes(data)
    with pytest.raises(GameFileError, match="checksum"):
        check_game_file(game)

    shutil.copy(source, game)
    game.with_suffix(".json").write_text("{not json")
    env = gymnasium.make("oel/TextWorld-Quest-v0", game_file=str(game))
    with pytest.raises(GameFileError, match="could not load"):
        env.reset(seed=0)


def test_a_given_game_file_is_played_and_named_by_its_textworld_uuid(game_cache):
    path = ensure_game("quest", make_options("quest", **QUEST), "train", 0)
    env = gymnasium.make("oel/TextWorld-Quest-v0", game_file=str(path))
    _, info = env.reset(seed=3)
    uuid = textworld.Game.load(str(path.with_suffix(".json"))).metadata["uuid"]
    assert info["task_id"] == f"tw-file-{uuid}"
    assert env.unwrapped.game_path == path


def test_missing_game_without_generation_points_to_make_games(tmp_path, monkeypatch):
    monkeypatch.setenv("OEL_CACHE_DIR", str(tmp_path))
    env = make_quest_env(generate=False)
    with pytest.raises(GameFileError, match="does not exist.*oel envs make-games --kind quest"):
        env.reset(seed=0)


def test_impossible_options_are_clear_errors():
    with pytest.raises(TextWorldOptionError, match="unknown cooking option.*world_size"):
        gymnasium.make("oel/TextWorld-Cooking-v0", world_size=3)
    with pytest.raises(TextWorldOptionError, match="take=3"):
        gymnasium.make("oel/TextWorld-Cooking-v0", recipe=2, take=3)
    with pytest.raises(TextWorldOptionError, match="split 'valid'"):
        gymnasium.make("oel/TextWorld-Quest-v0", split="valid")


def test_commands_are_tidied_and_meta_commands_recognised():
    assert clean_command("  take\tthe  apple\n") == "take the apple"
    assert "\\" not in clean_command("\\q look")
    assert is_meta_command("quit") and is_meta_command("RESTART") and is_meta_command("tw-trace-actions")
    assert not is_meta_command("take quilt")


def test_check_env_passes():
    check_env(make_quest_env().unwrapped, skip_render_check=True)


def test_make_games_cli_skips_cached_games_and_rejects_bad_options():
    runner = CliRunner()
    args = ["make-games", "--kind", "quest", "--count", "1", "--seed", "0"]
    args += [arg for name, value in QUEST.items() for arg in ("-o", f"{name}={value}")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "0 generated, 1 already cached" in result.output
    result = runner.invoke(app, ["make-games", "--kind", "quest", "-o", "rooms=3"])
    assert result.exit_code != 0 and "world_size" in result.output
