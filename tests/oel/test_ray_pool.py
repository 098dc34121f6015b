"""Rollout workers on a real Ray cluster (two worker nodes, `cluster` in conftest) writing into PostgreSQL.

Every check reads the store: each handed-out seed is there exactly as often as
it was handed out, whatever happened to the workers.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from agent.policy import SamplingParams
from agent.ray_pool import PolicySpec, RayError, RaySettings, RolloutPool, chunks_of
from agent.rollout import EpisodeTags, RolloutConfig
from memory import queries
from memory.store import ExperienceStore

pytest.importorskip("ray")


def rollout(batch: int = 4) -> RolloutConfig:
    return RolloutConfig(env_id="oel/FrozenLake-v0", split="train", batch=batch,
                         sampling=SamplingParams(max_new_tokens=4))  # fmt: skip


def stored(store: ExperienceStore, run_id: int, **tags) -> dict[int, int]:
    return queries.seed_counts(store, env_id="oel/FrozenLake-v0", split="train", run_id=run_id, **tags)


def test_chunks_keep_groups_whole():
    seeds = [5, 5, 5, 6, 6, 6, 7, 7, 7]
    assert chunks_of(seeds, 4) == [[5, 5, 5], [6, 6, 6], [7, 7, 7]]
    assert chunks_of([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_sqlite_is_refused_with_one_line(tmp_path):
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as store, pytest.raises(RayError) as info:
        RolloutPool(RaySettings(address="local"), store)
    message = str(info.value)
    assert "\n" not in message
    assert "PostgreSQL" in message and "postgresql+psycopg://" in message


def test_two_workers_on_two_nodes_play_every_seed_once_and_follow_deployments(
    cluster, pg_url, tiny_path, tiny_path_b
):
    with ExperienceStore.open(pg_url) as store:
        run_id = store.ensure_run("ray")
        round_id = store.start_round(run_id, 0)
        first = store.checkpoint_for_path(str(tiny_path), run_id=run_id)
        store.deploy(run_id, first)
        seeds = [s for s in range(8) for _ in range(2)]  # groups of 2: one seed, one worker
        with RolloutPool(RaySettings(address=cluster.address, workers=2), store, PolicySpec("hf")) as pool:
            result = pool.play(str(tiny_path), rollout(), EpisodeTags(run_id, round_id, first), seeds)
            assert stored(store, run_id, round_id=round_id) == {s: 2 for s in range(8)}
            assert len(result.workers) == 2
            assert len({label.split("@")[1] for label in result.workers}) == 2  # two nodes
            assert sorted(s for played in result.workers.values() for s in played) == seeds
            for played in result.workers.values():
                assert all(other.count(s) == 0 for s in played for other in result.workers.values()
                           if other is not played)  # fmt: skip
            assert len(result.summary.episodes) == 16

            again = pool.play(str(tiny_path), rollout(), EpisodeTags(run_id, round_id, first), seeds)
            assert sum(len(v) for v in again.workers.values()) == 0  # a replay writes nothing
            assert stored(store, run_id, round_id=round_id) == {s: 2 for s in range(8)}

            second = store.checkpoint_for_path(str(tiny_path_b), run_id=run_id)
            store.deploy(run_id, second)
            later = list(range(100, 104))
            followed = pool.play(None, rollout(batch=2), EpisodeTags(run_id, None, first), later,
                                 follow_run=run_id)  # fmt: skip
            assert len(followed.workers) == 2  # both workers reloaded the new deployment
            assert stored(store, run_id, round_id=None, checkpoint_id=second) == dict.fromkeys(later, 1)
            assert stored(store, run_id, round_id=None, checkpoint_id=first) == {}


def test_a_killed_worker_is_restarted_and_no_seed_is_lost_or_doubled(cluster, pg_url, tiny_path):
    with ExperienceStore.open(pg_url) as store:
        run_id = store.ensure_run("ray-kill")
        round_id = store.start_round(run_id, 0)
        checkpoint = store.checkpoint_for_path(str(tiny_path), run_id=run_id)
        seeds = list(range(12))
        settings = RaySettings(address=cluster.address, workers=2, max_restarts=2, max_task_retries=2)
        with RolloutPool(settings, store) as pool:
            victim = pool.pids()[0]
            outcome: dict = {}

            def collect() -> None:
                try:
                    outcome["result"] = pool.play(
                        str(tiny_path), rollout(batch=1), EpisodeTags(run_id, round_id, checkpoint), seeds
                    )
                except BaseException as exc:  # reported by the assertion below
                    outcome["error"] = exc

            thread = threading.Thread(target=collect)
            thread.start()
            deadline = time.monotonic() + 90
            while not stored(store, run_id, round_id=round_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            before = sum(stored(store, run_id, round_id=round_id).values())
            assert 0 < before < len(seeds), f"{before} episodes written before the kill"
            os.kill(victim, signal.SIGKILL)  # mid-collection: the first episodes are in, most are not
            thread.join(timeout=240)
            assert not thread.is_alive()
            assert "error" not in outcome, outcome.get("error")
            assert stored(store, run_id, round_id=round_id) == dict.fromkeys(seeds, 1)
            assert victim not in pool.pids()  # Ray restarted it


def test_workers_load_a_packed_ternary_student_without_importing_distill(
    cluster, pg_url, tiny_path, tmp_path
):
    """Workers import agent only: the packed loader reaches them through the oel.model_loaders entry point."""
    from agent.model import load_model
    from distill.ternary import convert, pack_model, save_packed_student

    model, tokenizer = load_model(tiny_path)
    packed = tmp_path / "packed"
    save_packed_student(pack_model(convert(model, "2:4")), packed)
    tokenizer.save_pretrained(str(packed))
    with ExperienceStore.open(pg_url) as store:
        run_id = store.ensure_run("packed")
        checkpoint = store.checkpoint_for_path(str(packed), run_id=run_id)
        with RolloutPool(RaySettings(address=cluster.address, workers=2), store, PolicySpec("hf")) as pool:
            result = pool.play(str(packed), rollout(), EpisodeTags(run_id, None, checkpoint), [0, 1, 2, 3])
        assert len(result.summary.episodes) == 4
        assert stored(store, run_id, checkpoint_id=checkpoint) == dict.fromkeys(range(4), 1)
