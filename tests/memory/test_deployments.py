"""Deployments and episode claiming (memory.rounds) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from store_helpers import insert_running_episode, make_steps

from memory.errors import StoreError
from memory.store import ExperienceStore

ENV = "oel/FrozenLake-v0"


def _episode(store: ExperienceStore, run_id: int, seed: int, **header) -> int:
    base = {"env_id": ENV, "task_id": f"t{seed}", "seed": seed, "split": "train", "run_id": run_id}
    result = {"total_return": 1.0, "won": True, "lost": False, "feedback": "goal"}
    return store.write_episode({**base, **header}, make_steps(2, tag=seed), result)


def test_newest_deployment_wins_and_unknown_checkpoints_are_refused(store: ExperienceStore) -> None:
    run_id = store.create_run("r")
    assert store.deployed_checkpoint(run_id) is None
    first = store.register_checkpoint(path="/ckpt/a", run_id=run_id)
    second = store.register_checkpoint(path="/ckpt/b", run_id=run_id, parent_id=first)
    store.deploy(run_id, first)
    assert store.deployed_checkpoint(run_id) == (first, "/ckpt/a")
    store.deploy(run_id, second)
    assert store.deployed_checkpoint(run_id) == (second, "/ckpt/b")
    with pytest.raises(StoreError, match="no such checkpoint"):
        store.deploy(run_id, second + 100)


def test_claim_takes_each_unclaimed_episode_exactly_once(store: ExperienceStore) -> None:
    run_id = store.create_run("r")
    other_run = store.create_run("other")
    checkpoint = store.register_checkpoint(path="/ckpt/a", run_id=run_id)
    round0, round1 = store.start_round(run_id, 0), store.start_round(run_id, 1)
    mine = [_episode(store, run_id, s, checkpoint_id=checkpoint) for s in range(3)]
    _episode(store, run_id, 10)  # no checkpoint (e.g. an RL trainer's own group): never claimed
    _episode(store, run_id, 11, checkpoint_id=checkpoint, split="test")  # held-out: never claimed
    _episode(store, run_id, 12, checkpoint_id=checkpoint, round_id=round0)  # already in a round
    _episode(store, other_run, 13, checkpoint_id=checkpoint)  # another run's
    insert_running_episode(
        store, [], env_id=ENV, seed=14, run_id=run_id, checkpoint_id=checkpoint
    )  # not claimable

    assert store.count_unclaimed(run_id, ENV) == 3
    assert store.claim_episodes(run_id, round1, ENV) == mine
    assert store.count_unclaimed(run_id, ENV) == 0
    assert store.claim_episodes(run_id, round1, ENV) == []
    late = _episode(store, run_id, 20, checkpoint_id=checkpoint)
    assert store.claim_episodes(run_id, round1, ENV) == [late]
