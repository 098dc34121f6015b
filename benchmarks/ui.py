"""`oel ui` page times on a big store: 50k episodes, 1M steps, rounds, knowledge, consolidations.

The store is built once (SQLite in a temporary folder, or `--db`), through the
store's own write path: 10 runs x 5 rounds x 1000 episodes of 20 steps with
realistic step sizes, every round's phase results (so the run pages draw their
charts), a knowledge version per round whose items link to source episodes, and
a consolidation with 50 logged steps per round. Then every page is requested
`--repeats` times in-process (Starlette's TestClient: the figure is the app's
render time, without a network) and the median and worst times are printed,
against the 300 ms goal.

    python benchmarks/ui.py                   # builds the store (~1 min), then times the pages
    python benchmarks/ui.py --db sqlite:////tmp/ui-big.db   # build it there and keep it (a new file)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

RUNS, ROUNDS, EPISODES, STEPS = 10, 5, 1000, 20


def build(url: str) -> None:
    from memory.records import CandidateDistribution, StepRecord
    from memory.store import ExperienceStore

    obs = "You moved down.\nP . .\nH H .\n. . G\nYou are at row 2, column 1.\nSteps left: 3." * 2
    with ExperienceStore.open(url) as store:
        if store.get_run("big-0") is not None:
            return
        started = time.perf_counter()
        for r in range(RUNS):
            run_id = store.create_run(f"big-{r}")
            checkpoint = store.register_checkpoint(path=f"/ckpt/{r}/0", run_id=run_id, method="base")
            for idx in range(ROUNDS):
                round_id = store.start_round(run_id, idx)
                batch = []
                for e in range(EPISODES):
                    steps = [
                        StepRecord(
                            i,
                            obs,
                            obs * 2,
                            "I go [down].",
                            "[down]",
                            obs,
                            float(i == STEPS - 1),
                            list(range(200)),
                            [75, 4488, 77, 2],
                            [-0.1, -0.2, -0.3, -0.05],
                            candidates=CandidateDistribution(
                                ["[up]", "[down]"], [[1], [2]], [-1.2, -0.35], chosen=1, temperature=1.0
                            ),
                        )
                        for i in range(STEPS)
                    ]
                    header = {
                        "env_id": "oel/FrozenLake-v0",
                        "task_id": f"t{e % 19}",
                        "seed": e // 8,
                        "split": "test" if e % 4 == 0 else "train",
                        "run_id": run_id,
                        "round_id": round_id,
                        "checkpoint_id": checkpoint,
                        "action_mode": "scored",
                    }
                    batch.append(
                        (
                            header,
                            steps,
                            {
                                "total_return": float(e % 3 == 0),
                                "won": e % 3 == 0,
                                "lost": e % 3 != 0,
                                "feedback": "done",
                            },
                        )
                    )
                    if len(batch) == 100:
                        ids = store.write_episodes(batch)
                        batch = []
                item = store.add_knowledge_item(
                    run_id=run_id, round_id=round_id, text=f"rule {idx}", source_episode_ids=ids[:20]
                )
                version = store.add_knowledge_version(
                    run_id=run_id, round_id=round_id, text=f"- rule {idx}", item_ids=[item], n_tokens=4
                )
                job = store.start_consolidation(
                    run_id=run_id,
                    round_id=round_id,
                    method="rl",
                    hparams={},
                    knowledge_version_id=version,
                    parent_checkpoint_id=checkpoint,
                )
                store.log_consolidation_steps(job, [{"step": s, "loss": 1 / (s + 1)} for s in range(1, 51)])
                child = store.register_checkpoint(
                    path=f"/ckpt/{r}/{idx + 1}",
                    run_id=run_id,
                    parent_id=checkpoint,
                    round_id=round_id,
                    method="rl",
                )
                store.finish_consolidation(job, child)
                for phase, result in (
                    ("collect", {"episodes": 750, "pass_rate": 0.3}),
                    ("extract", {"knowledge_version_id": version, "items": 1, "tokens": 4}),
                    ("consolidate", {"checkpoint_id": child, "method": "rl"}),
                    (
                        "evaluate",
                        {
                            "conditions": {
                                c: {
                                    "pass_rate": 0.3,
                                    "ci_low": 0.2,
                                    "ci_high": 0.4,
                                    "episodes": 250,
                                    "tokens_per_episode": 80.0,
                                }
                                for c in ("none", "consolidated")
                            }
                        },
                    ),
                    ("deploy", {"checkpoint_id": child}),
                ):
                    store.complete_phase(store.begin_phase(round_id, phase), result)
                store.finish_round(round_id)
                checkpoint = child
            print(
                f"built run {r + 1}/{RUNS} ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="store URL (default: a new SQLite file in a temporary folder)")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='oel-ui-bench-')}/big.db"
    build(url)

    from starlette.testclient import TestClient

    from memory.store import ExperienceStore
    from oel.ui.app import create_app

    with ExperienceStore.open(url, read_only=True) as store:
        episodes, steps = store.read_only_sql(
            "SELECT count(*), (SELECT count(*) FROM steps) FROM episodes"
        ).iloc[0]
        middle = int(
            store.read_only_sql("SELECT id FROM episodes WHERE split = 'train' LIMIT 1 OFFSET 25000").iloc[
                0, 0
            ]
        )
        version = int(store.read_only_sql("SELECT max(id) FROM knowledge_versions").iloc[0, 0])
    client = TestClient(create_app(url))
    pages = [
        "/",
        "/runs/big-5",
        "/runs/big-5/checkpoints",
        "/episodes",
        "/episodes?run=big-5&round=2&split=test",
        "/episodes?won=yes&sort=return&page=200",
        f"/episodes/{middle}",
        f"/episodes/{middle}/group",
        f"/knowledge/{version}",
        f"/knowledge/1/diff/{version}",
        "/episodes/99999999",
    ]
    print(f"store: {episodes} episodes, {steps} steps ({url})")
    print(f"{'page':<44}{'median ms':>10}{'max ms':>10}{'status':>8}{'< 300 ms':>10}")
    for page in pages:
        client.get(page)  # warm: templates compiled, tokenizer loaded
        times, status = [], 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            status = client.get(page).status_code
            times.append(1000 * (time.perf_counter() - started))
        median = statistics.median(times)
        print(f"{page:<44}{median:>10.1f}{max(times):>10.1f}{status:>8}{'yes' if median < 300 else 'NO':>10}")


if __name__ == "__main__":
    main()
