"""Batched rollouts: refills meet the budget, episodes land whole in the store, tokens are exact."""

from __future__ import annotations

import pytest

from agent.policy import SamplingParams
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from memory import queries
from memory.store import ExperienceStore


@pytest.fixture
def store(tmp_path):
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as s:
        yield s


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory, smollm_path):
    from tiny_models import save_tiny_llama

    from agent.hf_policy import HFPolicy

    return HFPolicy(save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m", smollm_path, seed=3), device="cpu")


def test_refills_slots_until_budget_and_stores_every_episode(store, tiny_policy):
    config = RolloutConfig(episodes=5, batch=2, seed=10, sampling=SamplingParams(max_new_tokens=8, seed=0))
    run_id = store.create_run("t")
    summary = run_rollouts(tiny_policy, store, config, tags=EpisodeTags(run_id=run_id))

    assert sorted(e.seed for e in summary.episodes) == [10, 11, 12, 13, 14]
    stored = queries.episodes(store)
    assert len(stored) == 5
    assert summary.env_steps == sum(e.steps for e in summary.episodes) == int(stored["n_steps"].sum())
    # Every step of the batch went through one policy call per lockstep iteration, never one per env.
    assert summary.policy_calls < summary.env_steps


def test_explicit_seeds_are_played_exactly(store, tiny_policy):
    config = RolloutConfig(batch=3, sampling=SamplingParams(max_new_tokens=4, seed=1))
    summary = run_rollouts(tiny_policy, store, config, seeds=[7, 3])
    assert sorted(e.seed for e in summary.episodes) == [3, 7]
    assert run_rollouts(tiny_policy, store, config, seeds=[]).episodes == []


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "max_steps"), [("oel/FrozenLake-v0", 4), ("oel/ToolArith-v0", 2)])
def test_smollm_plays_end_to_end_with_exact_tokens(store, smollm_policy, env_id, max_steps):
    config = RolloutConfig(
        env_id=env_id, episodes=2, batch=2, env_kwargs={"max_steps": max_steps},
        sampling=SamplingParams(max_new_tokens=24, seed=0),
    )  # fmt: skip
    summary = run_rollouts(smollm_policy, store, config)
    assert len(summary.episodes) == 2

    tokenizer = smollm_policy.tokenizer
    for episode in summary.episodes:
        steps = queries.transcript(store, episode.episode_id)
        assert len(steps) == episode.steps > 0
        for row in steps.itertuples():
            assert row.prompt in tokenizer.decode(row.prompt_ids)
            assert len(row.logprobs) == len(row.completion_ids) > 0
            assert (
                tokenizer.decode(row.completion_ids, skip_special_tokens=True).strip()
                == row.completion_text.strip()
            )
            assert row.state in row.prompt


def test_play_command_files_episodes_under_the_round(tmp_path, tiny_policy):
    from click.testing import CliRunner

    from oel.cli import command

    db = f"sqlite:///{tmp_path / 'play.db'}"
    args = ["play", "--model", str(tiny_policy.path), "--episodes", "2", "--batch", "2"]
    args += ["--max-new-tokens", "4", "--run", "r", "--round", "3", "--db", db]
    result = CliRunner().invoke(command(), args)
    assert result.exit_code == 0, result.output
    with ExperienceStore.open(db) as store:
        stored = queries.episodes(store, run="r")
    assert len(stored) == 2 and set(stored["round"]) == {3}


@pytest.mark.parametrize("command", ["play", "eval"])
def test_a_textworld_game_that_cannot_be_generated_is_one_line(tmp_path, tiny_policy, monkeypatch, command):
    from click.testing import CliRunner

    from envs.tw import games
    from oel.cli import command as oel

    def cannot(kind, options, split, seed, out):
        raise games.GameGenerationError(
            f"TextWorld found no {kind} quest with seed {seed}; try a larger world"
        )

    monkeypatch.setattr(games, "generate_game", cannot)
    args = [command, "--env", "oel/TextWorld-Quest-v0", "--model", str(tiny_policy.path), "--episodes", "1",
            "--batch", "1", "--max-new-tokens", "4", "--db", f"sqlite:///{tmp_path / 'oel.db'}"]  # fmt: skip
    result = CliRunner().invoke(oel(), args, env={"OEL_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert (
        lines[-1].startswith("error: TextWorld found no quest quest with seed ")
        and "Traceback" not in result.output
    )
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
