"""Consolidation never trains on held-out splits, and validates on the run's own environment options.

The round is scored FrozenLake played by the tiny random Llama; validation is
asked for the neighbour line (an environment option of the run), and its
episodes must show it: before `eval_env_kwargs`, a job whose method has no
environment of its own validated on the plain game.
"""

from __future__ import annotations

import pytest
from round_helpers import play_round

from distill.consolidation import consolidate, make_job
from distill.errors import ConsolidationError
from memory import queries
from memory.store import ExperienceStore
from oel.run_config import parse_loop_config


@pytest.fixture(scope="module")
def played(tmp_path_factory, tiny_path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('held')}/oel.db"
    return play_round(url, tiny_path, "- EXPERIENCE ITEM: x", action_mode="scored", episodes=4, group_size=2,
                      temperature=2.0)  # fmt: skip


@pytest.mark.parametrize("split", ["test", "val"])
def test_training_on_a_held_out_split_is_refused(played, tmp_path, split):
    with ExperienceStore.open(played) as store, pytest.raises(ConsolidationError, match="train split only"):
        make_job({"run": "r", "method": "sft", "action_mode": "scored", "split": split}, store)


def test_validation_plays_the_val_split_with_the_runs_environment_options(played, tmp_path):
    config = {"run": "r", "round": 0, "method": "sft", "action_mode": "scored", "steps": 1, "eval_every": 1,
              "eval_episodes": 3, "eval_env": "oel/FrozenLake-v0", "eval_env_kwargs": {"neighbours": True},
              "out": str(tmp_path / "out"), "lr": 1e-4}  # fmt: skip
    with ExperienceStore.open(played) as store:
        result = consolidate(config, store)
        steps = queries.steps(store, run="r", split="val")
    assert result.metrics and len(set(steps["episode_id"])) == 2 * 3  # the start and step 1
    assert steps["state"].str.contains("One move away: ").all()


def test_the_loop_hands_its_environment_options_to_validation():
    config = parse_loop_config(
        {"run": {"name": "x", "env_id": "oel/FrozenLake-4x4-v0", "env_kwargs": {"neighbours": True}},
         "consolidate": {"method": "sft", "eval_every": 5}},
        "x",
    )  # fmt: skip
    values = config.consolidate_values(0, "model", None, "out")
    assert values["eval_env"] == "oel/FrozenLake-4x4-v0" and values["eval_env_kwargs"] == {"neighbours": True}
