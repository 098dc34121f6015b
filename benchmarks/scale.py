"""Benchmark of Ray rollout workers and one PostgreSQL store on this machine; prints one table.

In one run, on a local `ray.cluster_utils.Cluster` (a head node with no CPUs and
`--nodes` worker nodes with one CPU each) and a fresh PostgreSQL schema that is
dropped afterwards:

1. episodes/s of `agent.ray_pool.RolloutPool` with 1 and with 2 workers
   (FrozenLake train seeds, the policy already loaded on every worker, so
   start-up is not counted);
2. store writes/s from 1 and from 2 Ray tasks writing synthetic finished
   episodes (20 steps each, 32 per transaction, the rollout's write shape) at
   once: what one PostgreSQL server takes from many workers;
3. seconds from a new deployment (a row in `deployments`) until every worker
   has played an episode on it: the disk weight-sync pattern's latency, which
   is the reload of the checkpoint folder plus one episode.

The checkpoint folder's size is printed too: with (3) and the write rate it is
what limits scaling past one machine (every worker reads the folder at each
deployment; every episode is one transaction on one server).

    python benchmarks/scale.py [--model DIR] [--episodes 32] [--pg URL]

The default model is the embedded SmolLM2-135M; `--model` takes any HF folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.model import resolve_model_path
from agent.policy import SamplingParams
from agent.ray_pool import PolicySpec, RaySettings, RolloutPool
from agent.rollout import EpisodeTags, RolloutConfig
from memory import queries
from memory.records import StepRecord
from memory.store import ExperienceStore

ENV = "oel/FrozenLake-v0"
OBJECT_STORE = 100 << 20


def rollout(batch: int) -> RolloutConfig:
    return RolloutConfig(env_id=ENV, split="train", batch=batch, sampling=SamplingParams(max_new_tokens=32))


def episodes_per_second(
    pool: RolloutPool, model: str, tags: EpisodeTags, first: int, n: int, batch: int
) -> float:
    """Warm every worker up with one chunk, then time `n` episodes."""
    warm = list(range(first, first + len(pool.workers)))
    pool.play(model, rollout(1), tags, warm)
    seeds = list(range(first + len(warm), first + len(warm) + n))
    started = time.perf_counter()
    pool.play(model, rollout(batch), tags, seeds)
    return n / (time.perf_counter() - started)


def write_synthetic(url: str, episodes: int, run_id: int) -> float:
    """Write `episodes` 20-step episodes in transactions of 32; return the seconds it took."""
    with ExperienceStore.open(url) as store:
        steps = [
            StepRecord(
                i,
                "state " * 40,
                "prompt " * 120,
                "reply [down]",
                "[down]",
                "obs " * 30,
                0.0,
                list(range(180)),
                list(range(40)),
                [-0.5] * 40,
            )  # fmt: skip
            for i in range(20)
        ]
        result = {"total_return": 0.0, "won": False, "lost": False, "feedback": "", "prompt_computed": 20}
        started = time.perf_counter()
        for start in range(0, episodes, 32):
            batch = [
                (
                    {"env_id": ENV, "task_id": "t", "seed": s, "split": "train", "run_id": run_id},
                    steps,
                    result,
                )
                for s in range(start, min(start + 32, episodes))
            ]
            store.write_episodes(batch)
        return time.perf_counter() - started


def writes_per_second(url: str, run_id: int, episodes: int, writers: int) -> tuple[float, float]:
    """(episodes/s, steps/s) of `writers` Ray tasks writing at once."""
    import ray

    task = ray.remote(num_cpus=1)(write_synthetic)
    started = time.perf_counter()
    ray.get([task.remote(url, episodes, run_id) for _ in range(writers)])
    seconds = time.perf_counter() - started
    return writers * episodes / seconds, writers * episodes * 20 / seconds


def deployment_latency(
    pool: RolloutPool, store: ExperienceStore, run_id: int, model: str, tmp: Path
) -> float:
    """Seconds from deploying a new checkpoint until each worker has played one episode on it."""
    folder = tmp / "redeployed"
    folder.symlink_to(Path(model), target_is_directory=True)  # a new checkpoint path, the same weights
    checkpoint = store.checkpoint_for_path(str(folder), run_id=run_id)
    seeds = list(range(50_000, 50_000 + len(pool.workers)))
    started = time.perf_counter()
    store.deploy(run_id, checkpoint)
    result = pool.play(None, rollout(1), EpisodeTags(run_id=run_id), seeds, follow_run=run_id)
    seconds = time.perf_counter() - started
    on_new = queries.seed_counts(store, env_id=ENV, split="train", run_id=run_id, checkpoint_id=checkpoint)
    if sorted(on_new) != seeds or len(result.workers) != len(pool.workers):
        raise RuntimeError(f"not every worker played the new deployment: {result.workers}")
    return seconds


def folder_mb(path: str) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def measure(url: str, model: str, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every figure, as (measure, value) rows, on a local Ray cluster and the store at `url`."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": OBJECT_STORE, "include_dashboard": False,
    })  # fmt: skip
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    ray.init(address=cluster.address, log_to_driver=False)
    rows: list[tuple[str, str]] = []
    try:
        with ExperienceStore.open(url) as store, tempfile.TemporaryDirectory() as tmp:
            run_id = store.ensure_run("scale")
            tags = EpisodeTags(run_id=run_id, checkpoint_id=store.checkpoint_for_path(model, run_id=run_id))
            store.deploy(run_id, tags.checkpoint_id)
            for workers in (1, 2):
                settings = RaySettings(address=cluster.address, workers=workers)
                with RolloutPool(settings, store, PolicySpec("hf")) as pool:
                    rate = episodes_per_second(pool, model, tags, 10_000 * workers, args.episodes, args.batch)
                    rows.append((f"episodes/s, {workers} worker(s)", f"{rate:.2f}"))
                    if workers == 2:
                        latency = deployment_latency(pool, store, run_id, model, Path(tmp))
                        rows.append(("deployment -> every worker played it (s)", f"{latency:.1f}"))
            for writers in (1, 2):
                episodes_s, steps_s = writes_per_second(url, run_id, args.write_episodes, writers)
                rows.append((f"store writes from {writers} worker(s): episodes/s", f"{episodes_s:.0f}"))
                rows.append((f"store writes from {writers} worker(s): steps/s", f"{steps_s:.0f}"))
            rows.append(("checkpoint folder (MB)", f"{folder_mb(model):.0f}"))
    finally:
        ray.shutdown()
        cluster.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF folder (default: embedded SmolLM2-135M)")
    parser.add_argument("--episodes", type=int, default=32, help="timed episodes per worker count")
    parser.add_argument("--batch", type=int, default=8, help="environments per worker call")
    parser.add_argument("--write-episodes", type=int, default=640, help="synthetic episodes per writer")
    parser.add_argument(
        "--pg", default=os.environ.get("OEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    model = str(resolve_model_path(args.model))
    with ExperienceStore.scratch_schema(args.pg, prefix="oel_scale") as url:
        rows = measure(url, model, args)
    table = Table(title=f"Ray workers and one PostgreSQL store ({Path(model).name}, {os.cpu_count()} CPUs)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
