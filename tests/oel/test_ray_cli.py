"""`oel loop`, `oel play` and `oel eval` on Ray rollout workers (the `cluster` of conftest) and PostgreSQL.

The commands run in this process (click's runner), connected to the cluster the
fixture started, so the workers are real Ray actors on two nodes while the
test pays for one interpreter.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from loop_helpers import tiny_sections, train_seeds, write_run_file

from memory import queries
from memory.store import ExperienceStore
from oel.cli import command

pytest.importorskip("ray")


def invoke(*args: str):
    return CliRunner().invoke(command(), list(args), env={"COLUMNS": "200"})


def test_loop_round_on_two_workers_says_who_played_which_seeds(cluster, pg_url, tmp_path, tiny_path):
    sections = tiny_sections(tmp_path, tiny_path, collect={"episodes": 8, "batch": 4, "group_size": 2})
    sections["run"]["db"] = pg_url
    sections["extract"] = {"source": "none"}
    sections["consolidate"] = {"method": "rl", "source": "round", "groups": 2, "steps": 1, "lr": 1e-4}
    sections["evaluate"] = {"episodes": 4, "batch": 2, "conditions": ["none", "consolidated"]}
    sections["ray"] = {"address": cluster.address, "workers": 2, "num_cpus": 0.5, "consolidate_num_cpus": 0.5}
    result = invoke("loop", "--config", str(write_run_file(tmp_path / "run.toml", sections)))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "played seeds" in line]
    assert len(lines) == 2 and {line.split()[0].split("@")[0] for line in lines} == {"worker-0", "worker-1"}
    with ExperienceStore.open(pg_url) as store:
        assert train_seeds(store) == [s for s in range(4) for _ in range(2)]  # each group whole, once
        held_out = queries.episodes(store, run="tiny", split="test")
        assert sorted(held_out["seed"]) == [0, 0, 1, 1, 2, 2, 3, 3]  # two conditions, each seed once
        results = store.phase_results(store.start_round(store.get_run("tiny"), 0))
    collect = results["collect"]
    assert results["consolidate"]["node"]  # consolidation ran as a Ray task
    assert sorted(s for seeds in collect["workers"].values() for s in seeds) == [
        s for s in range(4) for _ in "ab"
    ]


def test_play_on_workers_writes_claimable_episodes_and_eval_resumes(cluster, pg_url, tiny_path):
    ray = ["--ray", cluster.address, "--workers", "2", "--db", pg_url, "--model", str(tiny_path)]
    played = invoke("play", "--episodes", "4", "--batch", "2", "--max-new-tokens", "4", "--run", "w",
                    "--follow", *ray)  # fmt: skip
    assert played.exit_code == 0, played.output
    assert "worker-0@" in played.output and "worker-1@" in played.output
    with ExperienceStore.open(pg_url) as store:
        run_id = store.get_run("w")
        assert store.count_unclaimed(run_id, "oel/FrozenLake-v0") == 4  # what `oel loop --watch` claims
    evaluated = invoke("eval", "--episodes", "4", "--batch", "2", "--max-new-tokens", "4", "--run", "w", *ray)
    assert evaluated.exit_code == 0, evaluated.output
    again = invoke("eval", "--episodes", "4", "--batch", "2", "--max-new-tokens", "4", "--run", "w", *ray)
    assert again.exit_code == 0, again.output
    with ExperienceStore.open(pg_url) as store:
        assert sorted(queries.episodes(store, run="w", split="test")["seed"]) == [0, 1, 2, 3]


def test_ray_on_sqlite_is_one_line(tmp_path, tiny_path):
    db = f"sqlite:///{tmp_path / 'oel.db'}"
    result = invoke("play", "--ray", "local", "--db", db, "--model", str(tiny_path), "--episodes", "1")
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith("error: Ray workers need a PostgreSQL store") and "postgresql+psycopg://" in last


def test_a_consolidation_task_the_cluster_cannot_place_is_one_line(cluster, pg_url, tmp_path, tiny_path):
    sections = tiny_sections(tmp_path, tiny_path, collect={"episodes": 4, "batch": 2, "group_size": 2})
    sections["run"]["db"] = pg_url
    sections["extract"] = {"source": "none"}
    sections["consolidate"] = {"method": "rl", "source": "round", "groups": 2, "steps": 1, "lr": 1e-4}
    sections["ray"] = {"address": cluster.address, "workers": 2, "num_cpus": 0.5, "consolidate_num_gpus": 1.0}
    result = invoke("loop", "--config", str(write_run_file(tmp_path / "run.toml", sections)))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: the consolidation task asks Ray for 1 GPUs, but the cluster has 0 and the 2 rollout workers "
        "hold 0: lower [ray] consolidate_num_gpus or the workers' num_gpus, or add a node"
    )
