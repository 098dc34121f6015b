"""A round collects with [collect] env_kwargs laid over the run's options and evaluates on the run's game.

That is the curriculum the FrozenLake presets use (exploration gets more
steps than the held-out game allows); it must never leak into validation or
evaluation. The tiny random Llama plays; only where each episode was played
is checked.
"""

from __future__ import annotations

from loop_helpers import tiny_sections

from memory import queries
from memory.store import ExperienceStore
from oel.loop import OnlineLoop
from oel.run_config import parse_loop_config


def test_collection_plays_the_curriculum_and_evaluation_the_runs_own_game(tmp_path, tiny_path) -> None:
    sections = tiny_sections(
        tmp_path, tiny_path,
        run={"action_mode": "scored", "env_kwargs": {"neighbours": True}},
        collect={"episodes": 4, "batch": 4, "temperature": 2.0, "env_kwargs": {"max_steps": 9}},
        extract={"source": "none"},
        consolidate={"method": "credit", "steps": 1, "eval_every": 1, "eval_episodes": 2, "train_layers": 1},
        evaluate={"episodes": 2, "batch": 2, "conditions": ["consolidated"]},
    )  # fmt: skip
    sections["consolidate"].pop("max_new_tokens"), sections["consolidate"].pop("topk")
    config = parse_loop_config(sections, "tiny")
    with ExperienceStore.open(config.run.db) as store:
        OnlineLoop(config, store).run()
        steps = queries.steps(store, run="tiny")
    first = steps[steps["index"] == 0]
    for split, limit in (("train", 9), ("val", 5), ("test", 5)):
        mine = first[first["split"] == split]
        assert len(mine) and mine["state"].str.contains(f"Steps left: {limit}.", regex=False).all(), split
        assert mine["state"].str.contains("One move away: ").all()
