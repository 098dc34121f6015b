"""The learning table: what each way of learning does on maps the policy never trained on.

One run, one store, the same start (SmolLM2-135M-Instruct, scored actions)
and the same held-out tasks for every row: the 108 test maps of FrozenLake
4x4 with 3 holes (`oel/FrozenLake-4x4-v0`), which train and val never show.
Every pass rate is over distinct tasks, with its 95% Wilson interval over
those tasks (`memory.stats`), and every row that plays also reports step
accuracy: the share of visited states whose move was optimal.

Rows, in the order printed:

- reference policies, played through the same rollout and store
  (`agent.reference_policy`): the solver (the ceiling: it reads the grid),
  the best blind move sequence (chosen on the train maps; it never reads the
  grid), random over {down, right} and uniform random (their exact expected
  pass rates, by enumeration, are in the label);
- the start model, greedy, with and without the neighbour line in the
  observation (`neighbours`: the four adjacent symbols, meanings untold);
  OEL's text protocol on request (`--rows text`, ~15 CPU minutes, 0 before);
- training rows, each an `oel loop` run of `--rounds` rounds from the same
  start with the quick preset's collection, gate and budget
  (runs/frozenlake-quick.toml) and one thing changed: step-level credit with
  replay (the preset), the same without the neighbour line (the ablation),
  SFT on the policy's own wins with and without replay, GRPO on the rounds'
  groups (RAGEN's filter), GRPO with step-level advantages from the outcome
  table (Q(s, a) minus its state's mean, over every round), and the ceiling
  of the same loss and budget: `credit` with the solver's labels at the
  visited states (DAgger-style), at the loop's budget and at 10x its updates.

Settings were chosen on `val` (the gate's pass rate, and `oel eval --split
val`); `test` is read here for reporting only. Below the table, each
training row's test pass rate after every round.

    python benchmarks/learning.py                               # every row (hours on 2 cores)
    python benchmarks/learning.py --rows reference start credit  # a subset
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "runs" / "frozenlake-quick.toml"
ENV = "oel/FrozenLake-4x4-v0"
SEEN = {"neighbours": True}
TRAINED = ("credit", "credit-plain", "sft-replay", "sft", "grpo", "grpo-credit", "ceiling", "ceiling-10x")
ROWS = ("reference", "start", "text", *TRAINED)
DEFAULT_ROWS = [r for r in ROWS if r != "text"]
LABELS = {
    "credit": "step-level credit, replay (the quick preset)",
    "credit-plain": "step-level credit, replay, no neighbour line (ablation)",
    "sft-replay": "SFT on own wins, replay",
    "sft": "SFT on own wins, this round's only",
    "grpo": "GRPO on the rounds' groups (RAGEN filter)",
    "grpo-credit": "GRPO, step-level advantages from the outcome table",
    "ceiling": "ceiling: solver's moves at visited states, same budget",
    "ceiling-10x": "ceiling: solver's moves at visited states, 10x updates",
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loop_config(method: str, rounds: int, tmp: Path) -> dict:
    """The run file of one training row: the quick preset with one thing changed."""
    data = tomllib.loads(PRESET.read_text())
    data["run"] |= {"name": f"learn-{method}", "rounds": rounds, "checkpoints": str(tmp / "checkpoints")}
    data["run"].pop("db", None)
    data["evaluate"]["conditions"] = ["consolidated"]
    consolidate = data["consolidate"]
    if method == "credit-plain":
        data["run"]["env_kwargs"] = {k: v for k, v in data["run"]["env_kwargs"].items() if k != "neighbours"}
    if method in ("sft", "sft-replay"):
        for key in ("avoid", "gamma", "labels"):
            consolidate.pop(key, None)
        consolidate |= {"method": "sft", "batch": 32, "replay": -1 if method == "sft-replay" else 0}
    if method in ("grpo", "grpo-credit"):
        for key in ("avoid", "gamma", "labels", "replay", "batch"):
            consolidate.pop(key, None)
        consolidate |= {"method": "rl", "source": "round", "env_id": ENV, "groups": 16, "keep_top": 0.25,
                        "env_kwargs": data["run"]["env_kwargs"]}  # fmt: skip
    if method == "grpo-credit":  # every group trains under step-level credit: 8 of them per step
        consolidate |= {"baseline": "outcomes", "groups": 8, "keep_top": 1.0}
    if method.startswith("ceiling"):
        consolidate["labels"] = "solver"
    if method == "ceiling-10x":
        consolidate["steps"] = 10 * consolidate["steps"]
    return data


def main() -> None:  # noqa: C901 - one table, one straight script
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per training row (default: the preset's)"
    )
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=ROWS)
    parser.add_argument("--db", help="keep the store here (default: a temporary folder)")
    args = parser.parse_args()

    import envs  # noqa: F401
    from agent.backends import make_policy
    from agent.hf_policy import HFPolicy
    from agent.model import default_model_path
    from agent.policy import SamplingParams
    from envs.grid.reference import MOVES, best_blind, max_steps, random_win_rate, split_levels
    from memory import queries
    from memory.stats import format_task_rate
    from memory.store import ExperienceStore
    from oel.evaluation import EvalConfig, evaluate
    from oel.loop import OnlineLoop
    from oel.run_config import parse_loop_config

    rounds = args.rounds or tomllib.loads(PRESET.read_text())["run"]["rounds"]
    tmp = Path(tempfile.mkdtemp(prefix="oel-learning-"))
    url = args.db or f"sqlite:///{tmp / 'oel.db'}"
    test_levels = split_levels(ENV, "test", seeds=400)
    maps = len(test_levels)
    table: list[tuple[str, ...]] = []
    curves: dict[str, list[str]] = {}

    def row(label: str, r: dict, cpu: str, updates: str) -> None:
        rate = format_task_rate(r["task_score"], r["tasks"], r["wins"], r["episodes"], "maps")
        accuracy = "-" if r.get("step_accuracy") is None else f"{r['step_accuracy']:.2f}"
        tokens = "-" if r.get("tokens_per_episode") is None else f"{r['tokens_per_episode']:.1f}"
        table.append((label, rate, accuracy, tokens, cpu, updates))

    with ExperienceStore.open(url) as store:
        bench = store.ensure_run("bench")

        def held_out(label: str, policy, spec: str, mode: str, temperature: float, env_kwargs: dict) -> None:
            cpu0 = cpu_seconds()
            progress(f"{label}: {maps} held-out maps")
            sampling = SamplingParams(temperature=temperature, max_new_tokens=64, seed=0)
            config = EvalConfig(env_id=ENV, env_kwargs=env_kwargs, episodes=maps, batch=36, action_mode=mode,
                                sampling=sampling)  # fmt: skip
            checkpoint = store.checkpoint_for_path(spec, run_id=bench)
            r = evaluate(lambda: policy, store, config, run_id=bench, checkpoint_id=checkpoint)
            row(label, r, f"{(cpu_seconds() - cpu0) / 60:.1f}", "0")

        if "reference" in args.rows:
            steps = max_steps(ENV)
            sequence, train_wins = best_blind(split_levels(ENV, "train", seeds=400), steps)
            n_train = len(split_levels(ENV, "train", seeds=400))
            progress(f"best blind sequence on the {n_train} train maps: {sequence} ({train_wins} wins)")
            held_out(
                "solver (ceiling; reads the grid)",
                make_policy("reference", "solver"),
                "solver",
                "text",
                0.0,
                SEEN,
            )
            blind = make_policy("reference", "blind:" + ",".join(sequence))
            label = f"best blind sequence {' '.join(sequence)} (chosen on train)"
            held_out(label, blind, "blind", "text", 0.0, SEEN)
            for moves, name in (
                (["down", "right"], "random over {down, right}"),
                (list(MOVES), "uniform random"),
            ):
                exact = sum(random_win_rate(level, moves, steps) for level in test_levels) / maps
                spec = "random:" + ",".join(moves)
                label = f"{name} (exact: {100 * exact:.1f}%), one sampled play"
                held_out(label, make_policy("reference", spec), spec, "text", 1.0, SEEN)
        start = default_model_path()
        if {"start", "text"} & set(args.rows):
            policy = HFPolicy(start, device="cpu")
            if "start" in args.rows:
                held_out(
                    "start model, scored, greedy, neighbour line", policy, str(start), "scored", 0.0, SEEN
                )
                plain = store.ensure_run("bench-plain")
                cpu0 = cpu_seconds()
                config = EvalConfig(env_id=ENV, episodes=maps, batch=36, action_mode="scored",
                                    sampling=SamplingParams(temperature=0.0))  # fmt: skip
                r = evaluate(lambda: policy, store, config, run_id=plain,
                             checkpoint_id=store.checkpoint_for_path(str(start), run_id=plain))  # fmt: skip
                row("start model, scored, greedy, plain grid", r, f"{(cpu_seconds() - cpu0) / 60:.1f}", "0")
            if "text" in args.rows:
                held_out("start model, text (OEL's protocol), T=0.7", policy, str(start), "text", 0.7, SEEN)
            del policy

        for method in [m for m in TRAINED if m in args.rows]:
            cpu0 = cpu_seconds()
            progress(f"{method}: {rounds} rounds of the loop")
            loop = OnlineLoop(parse_loop_config(loop_config(method, rounds, tmp), f"learn-{method}"), store)
            summaries = loop.run()
            results = [s.results["evaluate"]["conditions"]["consolidated"] for s in summaries]
            curves[method] = [
                format_task_rate(c["task_score"], c["tasks"], c["wins"], c["episodes"], "maps")
                for c in results
            ]
            steps = queries.loss_curves(store, loop.run_id)
            updates = int(sum((m or {}).get("updates", 1) for m in steps["metrics"]))
            row(f"{LABELS[method]}, {rounds} rounds", results[-1], f"{(cpu_seconds() - cpu0) / 60:.1f}",
                str(updates))  # fmt: skip
            loop._policy = None  # free the deployed model before the next row

    from rich.console import Console
    from rich.table import Table

    out = Table(
        title=f"Learning on the {maps} held-out maps of {ENV} (never trained on; the same for every row), "
        "SmolLM2-135M, greedy unless said; 95% intervals over distinct maps"
    )
    for column in ("method", "test pass rate [95% CI] (maps; episodes)", "step acc", "tokens/ep", "CPU min",
                   "updates"):  # fmt: skip
        out.add_column(column, justify="right" if column != "method" else "left")
    for cells in table:
        out.add_row(*cells)
    console = Console(width=220)
    console.print(out)
    if curves:
        per_round = Table(title="test pass rate after each round (the same held-out maps)")
        per_round.add_column("method")
        for r in range(rounds):
            per_round.add_column(f"round {r}", justify="right")
        for method, values in curves.items():
            per_round.add_row(method, *values)
        console.print(per_round)
    print(f"store: {url}")


if __name__ == "__main__":
    main()
