"""Benchmark of the experience store on SQLite and PostgreSQL; prints one table.

For each backend, in one run:
1. steps/s through the batched write path (`write_episodes`, a vectorised
   rollout's batch of 32 finished 20-step episodes per transaction) with
   realistic and with compact steps, and through `write_episode` (one
   episode per transaction);
2. steps/s through naive ORM inserts (`memory.orm_baseline`): one `Step`
   object per row, added and flushed one at a time (one INSERT per row),
   committed per episode;
3. latency of `success_rate(by=("round",))` over about 1,000,000 steps in
   50,000 episodes (built with the fast path; median of 10 after a warm-up).

Realistic steps look like a grid-game step with knowledge in the prompt
(~1.1 KB of text, 180 prompt and 40 completion tokens: ~2.2 KB a row); compact
steps have a few bytes of text and 6 tokens (~0.1 KB a row), which isolates the
per-row cost from the bytes written. The 1M-step table in (3) uses compact
steps so that it builds in about a minute; the query never reads `steps`. SQLite runs on a file in
a temporary directory; PostgreSQL in a fresh schema that is dropped afterwards
(skipped with a note when the server is unreachable).

    python benchmarks/store.py [--query-episodes 50000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from memory import queries
from memory.orm_baseline import write_episodes_orm
from memory.records import StepRecord
from memory.store import ExperienceStore, StoreError

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STEPS_PER_EPISODE = 20
BATCH_EPISODES = 32


def realistic_steps(n: int, seed: int) -> list[StepRecord]:
    """`n` steps shaped like a FrozenLake step with a knowledge block in the prompt."""
    state = "You are at (1, 2). Moves so far: right, down. The ice is slippery here. " * 3
    knowledge = (
        "Given experience for rules or strategies you have learned: - EXPERIENCE ITEM: avoid holes. " * 4
    )
    return [
        StepRecord(
            index=i,
            state=state,
            prompt=f"You are playing a game. {knowledge} Current situation: {state} What action do you take?",
            completion_text="I should move towards the goal while avoiding the hole. [down]",
            action="down",
            observation="You moved down. You are at (2, 2).",
            reward=0.0,
            prompt_ids=list(range(seed, seed + 180)),
            completion_ids=list(range(seed, seed + 40)),
            logprobs=[-0.3] * 40,
            latency_s=0.05,
        )
        for i in range(n)
    ]


def short_steps(n: int) -> list[StepRecord]:
    """Small steps for building the 1M-step table quickly."""
    return [
        StepRecord(i, "s", "p", "c [a]", "a", "o", 0.0, [1, 2, 3, 4], [5, 6], [-0.1, -0.2], 0.0)
        for i in range(n)
    ]


def header(k: int, round_id: int | None = None, run_id: int | None = None) -> dict:
    return {"env_id": "oel/FrozenLake-v0", "task_id": f"t{k % 97}", "seed": k, "split": "train",
            "run_id": run_id, "round_id": round_id}  # fmt: skip


def result(k: int) -> dict:
    return {"total_return": float(k % 3 == 0), "won": k % 3 == 0, "lost": k % 3 != 0, "feedback": "done"}


def batched_rate(store: ExperienceStore, n_steps: int, steps: list[StepRecord]) -> tuple[float, float]:
    """Steps per wall-clock second and per CPU-second of this process (SQLite's own work included)."""
    n_batches = max(1, n_steps // (STEPS_PER_EPISODE * BATCH_EPISODES))
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(n_batches):
        store.write_episodes(
            [(header(b * BATCH_EPISODES + j), steps, result(j)) for j in range(BATCH_EPISODES)]
        )
    n = n_batches * BATCH_EPISODES * STEPS_PER_EPISODE
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def single_rate(store: ExperienceStore, n_steps: int) -> float:
    steps = realistic_steps(STEPS_PER_EPISODE, 0)
    n_episodes = max(1, n_steps // STEPS_PER_EPISODE)
    start = time.perf_counter()
    for k in range(n_episodes):
        store.write_episode(header(k), steps, result(k))
    return n_episodes * STEPS_PER_EPISODE / (time.perf_counter() - start)


def naive_rate(store: ExperienceStore, n_steps: int) -> float:
    """One ORM object per row, flushed one by one (one INSERT each), committed per episode."""
    steps = realistic_steps(STEPS_PER_EPISODE, 0)
    n_episodes = max(1, n_steps // STEPS_PER_EPISODE)
    start = time.perf_counter()
    write_episodes_orm(store, ((header(k), steps) for k in range(n_episodes)))
    return n_episodes * STEPS_PER_EPISODE / (time.perf_counter() - start)


def build_query_table(store: ExperienceStore, n_episodes: int, n_rounds: int = 10) -> float:
    """Fill `n_episodes` x 20 short steps over `n_rounds` rounds; return the seconds it took."""
    run = store.create_run(f"bench-{uuid.uuid4().hex[:6]}")
    rounds = [store.start_round(run, r) for r in range(n_rounds)]
    steps = short_steps(STEPS_PER_EPISODE)
    start = time.perf_counter()
    batch = 250
    for first in range(0, n_episodes, batch):
        store.write_episodes(
            [
                (header(k, rounds[k % n_rounds], run), steps, result(k))
                for k in range(first, min(first + batch, n_episodes))
            ]
        )
    return time.perf_counter() - start


def median_ms(fn: Callable[[], object], repeats: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def bench(backend: str, args: argparse.Namespace, console: Console) -> dict[str, float]:
    """All figures for one backend; the write paths and the query each get a fresh database."""
    row: dict[str, float] = {}
    with _url(backend, args) as url, ExperienceStore.open(url) as store:
        console.log(f"{backend}: write paths")
        row["batched"], row["batched_cpu"] = batched_rate(
            store, args.throughput_steps, realistic_steps(STEPS_PER_EPISODE, 0)
        )
        row["compact"], row["compact_cpu"] = batched_rate(
            store, args.throughput_steps, short_steps(STEPS_PER_EPISODE)
        )
        row["single"] = single_rate(store, args.throughput_steps // 2)
        row["naive"] = naive_rate(store, args.naive_steps)
    with _url(backend, args) as url, ExperienceStore.open(url) as store:
        console.log(f"{backend}: building {args.query_episodes * STEPS_PER_EPISODE:,} steps for the query")
        row["build_s"] = build_query_table(store, args.query_episodes)
        if store.dialect == "postgresql":  # fresh statistics, as autovacuum would give a long-lived table
            store.analyze()
        row["episodes"] = int(queries.success_rate(store, by=()).loc[0, "episodes"])
        row["steps"] = int(store.read_only_sql("SELECT count(*) FROM steps").iloc[0, 0])
        row["query_ms"] = median_ms(lambda: queries.success_rate(store, by=("round",)))
    return row


def _url(backend: str, args: argparse.Namespace) -> AbstractContextManager[str]:
    if backend == "sqlite":
        return sqlite_url()
    return ExperienceStore.scratch_schema(args.pg_url, prefix="oel_bench")


ROWS = [
    ("batched steps/s (realistic ~2.2 KB steps)", lambda r: f"{r['batched']:,.0f}"),
    ("batched steps/s (compact ~0.1 KB steps)", lambda r: f"{r['compact']:,.0f}"),
    (
        "  same, per writer CPU-second (realistic / compact)",
        lambda r: f"{r['batched_cpu']:,.0f} / {r['compact_cpu']:,.0f}",
    ),
    ("write_episode steps/s (1 episode / txn)", lambda r: f"{r['single']:,.0f}"),
    ("naive ORM steps/s (1 object / INSERT)", lambda r: f"{r['naive']:,.0f}"),
    ("batched / naive", lambda r: f"{r['batched'] / r['naive']:.1f}x"),
    ("query table: episodes / steps", lambda r: f"{r['episodes']:,.0f} / {r['steps']:,.0f}"),
    ("success rate by round, ms (median)", lambda r: f"{r['query_ms']:.1f}"),
    ("building the query table, s", lambda r: f"{r['build_s']:.0f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--throughput-steps", type=int, default=64_000)
    parser.add_argument("--naive-steps", type=int, default=4_000)
    parser.add_argument("--query-episodes", type=int, default=50_000)
    args = parser.parse_args()
    console = Console()
    backends = args.backends.split(",")
    results: dict[str, dict[str, float] | str] = {}
    for backend in backends:
        try:
            results[backend] = bench(backend, args, console)
        except StoreError as exc:  # a down server must not hide the other backend's figures
            results[backend] = f"skipped: {str(exc).splitlines()[0]}"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(title=f"experience store ({os.cpu_count()} cores, load average at the end {load})")
    table.add_column("", no_wrap=True)
    for backend in backends:
        table.add_column(backend, justify="right")
    for label, fmt in ROWS:
        table.add_row(label, *(r if isinstance(r, str) else fmt(r) for r in results.values()))
    console.print(table)


if __name__ == "__main__":
    main()
