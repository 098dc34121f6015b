"""Rollout throughput and prefill work: text vs scored actions, batch 1 vs 32, prefix reuse off vs on.

Every row plays the same workload through the normal rollout path into a
throw-away SQLite store (so store cost is in the figure, as in real runs):
train seeds 0..N-1 of FrozenLake or TextWorld-Cooking, OEL's sampling
settings, `--max-new-tokens` per text reply, the embedded SmolLM2-135M on the
hf backend. Batch 1 plays `--episodes-b1` episodes one at a time; batch 32
plays `--episodes-b32` in lockstep. Each row runs in its own subprocess, so
its peak RSS is its own.

Columns: episodes/s, env steps/s, prompt tokens sent per episode, prompt
tokens actually computed per episode (the rest came from the prefix cache),
tokens/s (generated in text mode; scored: every candidate's tokens), peak
RSS. "vs off" divides a reuse-on row's computed prompt tokens by its reuse-off
twin's, measured in the same run; "vs sent" divides them by the prompt tokens
sent, which is what main's `transformers.generate` path computed. (With reuse
off the two differ only where two episodes of a batch start from the same map,
which FrozenLake's 19 maps make common: identical prompts are computed once.)
Knowledge rows put a fixed ~180-token knowledge text in every prompt.

    python benchmarks/rollout.py                       # all rows (~30-40 min on 2 cores)
    python benchmarks/rollout.py --envs frozenlake --modes scored
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ENVS = {
    "frozenlake": ("oel/FrozenLake-v0", {}),
    "cooking": ("oel/TextWorld-Cooking-v0", {"max_steps": 6}),
}


KNOWLEDGE = "\n".join(
    f"- EXPERIENCE ITEM: {line}"
    for line in (
        "P marks where you stand, G is the goal, H is a hole and . is safe ice.",
        "Stepping onto H loses the game at once; reaching G wins it.",
        "Moving into the edge of the map leaves you where you were and costs a step.",
        "The goal is always at the bottom right, so moves down and right bring you closer.",
        "Before each move, check the cell you would enter: if it is H, choose another direction.",
        "Plan the whole path first: a route of only down and right moves around the holes usually exists.",
        "You have few steps; never waste one on a move that cannot bring you closer to G.",
        "Reply with exactly one move in square brackets: [up], [down], [left] or [right].",
    )
)
"""A fixed knowledge text (~180 tokens) for the rows that put knowledge in context."""


def measure(env: str, mode: str, batch: int, episodes: int, reuse: bool, max_new_tokens: int,
            knowledge: bool) -> dict:  # fmt: skip
    """One row, in this process: play, and report the figures as a dict."""
    from agent.hf_policy import DEFAULT_PREFIX_CACHE_MB, HFPolicy
    from agent.policy import SamplingParams
    from agent.rollout import RolloutConfig, run_rollouts
    from memory.store import ExperienceStore

    env_id, env_kwargs = ENVS[env]
    policy = HFPolicy(device="cpu", prefix_cache_mb=DEFAULT_PREFIX_CACHE_MB if reuse else 0)
    with tempfile.TemporaryDirectory() as tmp, ExperienceStore.open(f"sqlite:///{tmp}/bench.db") as store:
        warm = RolloutConfig(env_id=env_id, env_kwargs=env_kwargs, episodes=1, batch=1, action_mode=mode,
                             sampling=SamplingParams(max_new_tokens=4))  # fmt: skip
        run_rollouts(policy, store, warm, seeds=[10_000])  # first-call allocations, game generation
        policy.prefix_cache.clear()
        config = RolloutConfig(
            env_id=env_id, env_kwargs=env_kwargs, episodes=episodes, batch=batch, action_mode=mode,
            sampling=SamplingParams(max_new_tokens=max_new_tokens, seed=0),
        )  # fmt: skip
        started = time.perf_counter()
        summary = run_rollouts(policy, store, config, knowledge=KNOWLEDGE if knowledge else None)
        seconds = time.perf_counter() - started
    tokens = summary.scored_tokens if mode == "scored" else summary.generated_tokens
    n = len(summary.episodes)
    return {
        "episodes_s": n / seconds, "steps_s": summary.env_steps / seconds,
        "prompt_per_ep": summary.prompt_tokens / n, "computed_per_ep": summary.prompt_computed / n,
        "tokens_s": tokens / seconds, "seconds": seconds, "won": sum(e.won for e in summary.episodes), "n": n,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--modes", nargs="+", default=["text", "scored"], choices=["text", "scored"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--episodes-b1", type=int, default=2, help="episodes played at batch 1")
    parser.add_argument("--episodes-b32", type=int, default=32, help="episodes played at batch 32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--knowledge",
        nargs="+",
        default=["no", "yes"],
        choices=["no", "yes"],
        help="rows without and with a fixed knowledge text in context (yes: batch 32 only)",
    )
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row, print JSON
    args = parser.parse_args()
    if args.row:
        env, mode, batch, episodes, reuse, knowledge = args.row.split(",")
        row = measure(
            env, mode, int(batch), int(episodes), reuse == "on", args.max_new_tokens, knowledge == "yes"
        )
        print(json.dumps(row))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"rollouts on SmolLM2-135M (hf, fp32, 2 CPU cores), max_new_tokens={args.max_new_tokens}"
    )
    columns = ("env", "mode", "knowledge", "batch", "reuse", "episodes", "episodes/s", "env steps/s",
               "prompt tok/ep", "computed tok/ep", "vs off", "vs sent", "tokens/s", "peak RSS MB",
               "seconds")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    plan = [
        (env, mode, knowledge, batch)
        for env in args.envs for mode in args.modes for knowledge in args.knowledge for batch in args.batches
        if knowledge == "no" or (batch > 1 and env == "frozenlake")
    ]  # fmt: skip
    for env, mode, knowledge, batch in plan:
        episodes = args.episodes_b1 if batch == 1 else args.episodes_b32
        off = None
        for reuse in ("off", "on"):
            row = f"{env},{mode},{batch},{episodes},{reuse},{knowledge}"
            command = [sys.executable, __file__, "--row", row, "--max-new-tokens", str(args.max_new_tokens)]
            print(f"[{time.strftime('%H:%M:%S')}] {row}", file=sys.stderr, flush=True)
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ}, check=False)
            if done.returncode != 0:
                table.add_row(
                    env, mode, knowledge, str(batch), reuse, "failed: " + done.stderr.strip()[-200:]
                )
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            off = r if reuse == "off" else off
            vs_off = f"{r['computed_per_ep'] / off['computed_per_ep']:.2f}x" if off else "-"
            vs_sent = f"{r['computed_per_ep'] / r['prompt_per_ep']:.2f}x"
            table.add_row(
                env, mode, knowledge, str(batch), reuse, str(r["n"]), f"{r['episodes_s']:.3f}",
                f"{r['steps_s']:.2f}", f"{r['prompt_per_ep']:.0f}", f"{r['computed_per_ep']:.0f}", vs_off,
                vs_sent, f"{r['tokens_s']:.1f}", f"{r['rss_mb']:.0f}", f"{r['seconds']:.0f}",
            )  # fmt: skip
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
