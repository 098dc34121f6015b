"""Faults of a loop on Ray (`cluster`, PostgreSQL): a killed consolidation task, a killed driver.

The cluster has two one-CPU nodes, so the two rollout workers ask for half a CPU
each and the consolidation task for half a CPU: the task fits beside them. The
driver that is killed is an `oel loop` subprocess on the same cluster (Ray ends
its workers with it); the rerun is `oel loop` in this process. Every check
reads the store.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from loop_helpers import consolidation_steps, start, tiny_sections, train_seeds, write_run_file
from sqlalchemy import func, select
from sqlalchemy.exc import ProgrammingError

from agent.ray_pool import PolicySpec, RolloutPool
from memory.models import Episode
from memory.store import ExperienceStore
from oel.cli import command
from oel.loop import OnlineLoop
from oel.run_config import load_loop_config

pytest.importorskip("ray")

TASK_TITLE = b"ray::oel-consolidate"
"""What Ray's worker process is called while it runs the consolidation task (its process title)."""


def ray_sections(tmp_path: Path, tiny_path: Path, pg_url: str, address: str, **consolidate) -> dict:
    sections = tiny_sections(tmp_path, tiny_path, collect={"episodes": 8, "batch": 2, "group_size": 2})
    sections["run"]["db"] = pg_url
    sections["extract"] = {"source": "none"}
    sections["consolidate"] = {"method": "rl", "source": "round", "groups": 2, "steps": 1, "lr": 1e-4,
                               "save_every": 1, **consolidate}  # fmt: skip
    sections["evaluate"] = {"episodes": 2, "batch": 2, "conditions": ["none"]}
    sections["ray"] = {"address": address, "workers": 2, "num_cpus": 0.5, "consolidate_num_cpus": 0.5}
    return sections


def descendants(root: int) -> set[int]:
    """Every process started by process `root`, directly or through others (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # "pid (name) state ppid ..."
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def task_pids() -> list[int]:
    """The consolidation task's processes among this test's own (the `cluster` fixture's raylets are
    children of this process, their workers theirs), so no other process on the machine is touched."""
    pids = []
    for pid in sorted(descendants(os.getpid())):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(TASK_TITLE):
                pids.append(pid)
        except OSError:  # the process ended while we looked
            continue
    return pids


def kill_task_after_first_snapshot(out: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the consolidation task once its first snapshot is complete (resume-N, not resume-N.tmp)."""
    while not stop.is_set():
        if any(p.is_dir() and not p.name.endswith(".tmp") for p in out.glob("resume-*")):
            for pid in task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            if killed:
                return
        time.sleep(0.01)


def test_a_killed_consolidation_task_is_retried_and_resumes_from_its_snapshot(
    cluster, pg_url, tmp_path, tiny_path
):
    sections = ray_sections(tmp_path, tiny_path, pg_url, cluster.address, steps=4)
    config = load_loop_config(write_run_file(tmp_path / "run.toml", sections))
    out = tmp_path / "ckpts" / "tiny" / "round-0"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_task_after_first_snapshot, args=(out, killed, stop), daemon=True)
    with ExperienceStore.open(pg_url) as store, RolloutPool(config.ray, store, PolicySpec("hf")) as pool:
        killer.start()
        try:
            [summary] = OnlineLoop(config, store, pool=pool).run()
        finally:
            stop.set()
            killer.join()
        steps = consolidation_steps(store)
    consolidated = summary.results["consolidate"]
    assert killed, "the consolidation task was never seen running"
    assert os.getpid() not in killed  # it ran in a Ray worker, not in the driver
    assert 1 <= consolidated["resumed_after"] < 4  # the retry started from a snapshot, not from step 0
    assert consolidated["node"] and Path(consolidated["path"]).is_dir()
    assert steps == 4  # every step logged once, whichever attempt ran it


def test_a_driver_killed_during_collection_resumes_from_the_store_with_every_seed_once(
    cluster, pg_url, tmp_path, tiny_path
):
    run_file = write_run_file(
        tmp_path / "run.toml", ray_sections(tmp_path, tiny_path, pg_url, cluster.address)
    )
    driver = start("loop", "--config", str(run_file), log=tmp_path / "first.log")
    stored = 0
    with ExperienceStore.open(pg_url) as store:
        deadline = time.monotonic() + 240
        while stored == 0 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with store.engine.connect() as conn:
                    stored = conn.execute(select(func.count()).select_from(Episode)).scalar_one()
            except ProgrammingError:  # the driver has not created the tables yet
                stored = 0
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert 0 < stored < 8, (tmp_path / "first.log").read_text()  # killed mid-collection
        again = CliRunner().invoke(command(), ["loop", "--config", str(run_file)], env={"COLUMNS": "200"})
        assert again.exit_code == 0, again.output
        assert train_seeds(store) == [s for s in range(4) for _ in range(2)]  # each group once, both drivers
