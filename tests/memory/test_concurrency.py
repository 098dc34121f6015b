"""Real writer processes: four at once lose nothing; a SIGKILLed writer leaves nothing half-visible,
whether it is killed between episodes or inside an episode's transaction, its rows inserted, before COMMIT."""

from __future__ import annotations

import os
import signal
import subprocess

from sqlalchemy import func, select
from store_helpers import writer_cmd

from memory import queries
from memory.models import Episode, Step
from memory.store import ExperienceStore

N_WORKERS = 4
N_EPISODES = 25


def _episode_steps(k: int) -> int:
    return 3 + k % 5  # as in store_writer.py's batch mode


def test_four_writers_at_once_lose_and_corrupt_nothing(store: ExperienceStore) -> None:
    procs = [
        subprocess.Popen(
            writer_cmd("batch", store.url, str(w), str(N_EPISODES)), stderr=subprocess.PIPE, text=True
        )
        for w in range(N_WORKERS)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    df = queries.episodes(store)
    assert len(df) == N_WORKERS * N_EPISODES
    assert queries.episodes(store, include_incomplete=True).shape[0] == len(df)
    for worker in range(N_WORKERS):
        mine = df[df["task_id"] == f"w{worker}"]
        assert sorted(mine["seed"]) == list(range(N_EPISODES))
        assert dict(zip(mine["seed"], mine["n_steps"], strict=True)) == {
            k: _episode_steps(k) for k in range(N_EPISODES)
        }
    # every step belongs to the right episode and carries its own content
    steps = queries.steps(store)
    assert len(steps) == sum(_episode_steps(k) for k in range(N_EPISODES)) * N_WORKERS
    seeds = dict(zip(df["id"], df["seed"], strict=True))
    tasks = dict(zip(df["id"], df["task_id"], strict=True))
    for row in steps.itertuples():
        tag = int(tasks[row.episode_id][1:]) * 100_000 + seeds[row.episode_id]
        assert row.completion_ids == [tag, row.index, row.index + 1]
        assert row.state == f"state {tag}/{row.index}"


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_writer_killed_mid_episode_leaves_only_whole_episodes(store: ExperienceStore) -> None:
    proc = subprocess.Popen(writer_cmd("hang", store.url), stdout=subprocess.PIPE, text=True)
    try:
        episode = int(proc.stdout.readline())
    finally:
        _kill(proc)
    everything = queries.episodes(store, include_incomplete=True)
    assert everything["id"].tolist() == [episode] and everything["status"].tolist() == ["complete"]
    assert queries.steps(store, include_incomplete=True).shape[0] == 3  # the half-played one left nothing


def test_writer_killed_inside_its_transaction_leaves_nothing_of_it(store: ExperienceStore) -> None:
    n_steps = 40
    proc = subprocess.Popen(writer_cmd("mid", store.url, str(n_steps)), stdout=subprocess.PIPE, text=True)
    try:
        whole = int(proc.stdout.readline())
        # the writer is inside write_episode's transaction: every row inserted, COMMIT not yet sent
        assert [int(n) for n in proc.stdout.readline().split()] == [2, 3 + n_steps]
        assert queries.episodes(store, include_incomplete=True)["id"].tolist() == [whole]
    finally:
        _kill(proc)
    with ExperienceStore.open(store.url) as fresh, fresh.engine.connect() as conn:
        counts = conn.execute(
            select(Episode.task_id, Episode.status, Episode.n_steps, func.count(Step.id))
            .outerjoin(Step, Step.episode_id == Episode.id)
            .group_by(Episode.id, Episode.task_id, Episode.status, Episode.n_steps)
        ).all()
    assert counts == [("whole", "complete", 3, 3)]  # not one row of the killed transaction


def test_store_reopens_cleanly_after_a_crash(store: ExperienceStore) -> None:
    proc = subprocess.Popen(writer_cmd("hang", store.url), stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
    finally:
        _kill(proc)
    with ExperienceStore.open(store.url) as reopened:
        reopened.write_episode(
            {"env_id": "e", "task_id": "after", "seed": 1, "split": "train"}, [],
            {"total_return": 0.0, "won": False, "lost": True, "feedback": ""},
        )  # fmt: skip
        assert queries.episodes(reopened)["task_id"].tolist() == ["done", "after"]
