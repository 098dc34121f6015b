"""Fixtures of the orchestration tests: the store the viewer tests look at (a real short run, plus
knowledge and a hostile reply), and a local Ray cluster for the Ray tests.

`cluster` is `ray.cluster_utils.Cluster`: a head node with no CPUs and two worker
nodes with one CPU each, so two one-CPU workers land on different nodes; small
object stores, no dashboard. It is module-scoped: a Ray test module starts one.
"""

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


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    object_store = 100 << 20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": object_store, "include_dashboard": False},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=object_store)
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
