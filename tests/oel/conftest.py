"""The store the viewer tests look at: a real short run, plus knowledge and a hostile reply."""

from __future__ import annotations

import pytest
from loop_helpers import tiny_sections, write_run_file

from memory.knowledge.authored import add_authored_knowledge
from memory.records import StepRecord
from memory.store import ExperienceStore
from oel.loop import OnlineLoop
from oel.run_config import load_loop_config

HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(2)> [down]'


@pytest.fixture(scope="session")
def filled(tmp_path_factory, tiny_path) -> str:
    tmp = tmp_path_factory.mktemp("ui")
    sections = tiny_sections(tmp, tiny_path, collect={"episodes": 8, "batch": 8, "group_size": 4})
    sections["run"] |= {"action_mode": "scored", "name": "ui"}
    sections["sampling"] = {"temperature": 1.0}
    sections["extract"] = {"source": "none"}
    sections["consolidate"] = {"method": "rl", "source": "round", "groups": 2, "steps": 1, "lr": 1e-4}
    config = load_loop_config(write_run_file(tmp / "run.toml", sections))
    with ExperienceStore.open(sections["run"]["db"]) as store:
        OnlineLoop(config, store).run()
        run_id = store.get_run("ui")
        add_authored_knowledge(store, run_id, ["Holes end the game; <b>avoid</b> them."], author="<i>ada</i>")
        step = StepRecord(0, HOSTILE, HOSTILE, HOSTILE, "[down]", HOSTILE, 1.0, [1, 2], [3, 4], [-0.1, -3.0])
        header = {
            "env_id": "oel/FrozenLake-v0",
            "task_id": HOSTILE,
            "seed": 0,
            "split": "train",
            "run_id": run_id,
        }
        store.write_episode(
            header, [step], {"total_return": 1.0, "won": True, "lost": False, "feedback": HOSTILE}
        )
    return sections["run"]["db"]
