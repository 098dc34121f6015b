"""RL, OPCD and OPCD+RL for the same wall-clock budget from the same SmolLM2, then the held-out FrozenLake.

Run: `python benchmarks/rl.py [--budget 240] [--maps 16] [--train-episodes 8] [--max-new-tokens 128]`.

What happens, all in a temporary SQLite store:

1. the embedded SmolLM2-135M plays `--train-episodes` FrozenLake train
   episodes as round 0 (OPCD's prompts are their logged states);
2. a short HAND-WRITTEN knowledge text (below) is stored as the round's
   knowledge version (extraction with the 135M model would cost minutes and
   mostly produce junk; the table's caption says so);
3. for each method, a fresh student loaded from the same checkpoint trains
   with `distill.opcd.make_consolidator(...).train_step` until `--budget`
   seconds have passed (a step that starts inside the budget finishes, so
   the seconds column shows what each really used);
4. the trained in-memory student plays the first `--maps` held-out maps
   without knowledge (`agent.evaluate`, OEL's sampling, T=0.7), and so does
   the untrained start ("none").

The machine is shared and has 2 cores, so steps per budget are noisy; pass
rates on 16 maps move in steps of 6 points, and the 135M model may well
score 0% everywhere. Only the relative picture within one run means much.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its sibling
# benchmarks/envs.py would shadow the `envs` package; drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from agent.evaluate import EvalConfig, evaluate  # noqa: E402
from agent.hf_policy import HFPolicy  # noqa: E402
from agent.model import default_model_path  # noqa: E402
from agent.policy import SamplingParams  # noqa: E402
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts  # noqa: E402
from distill.opcd import ConsolidateConfig, make_consolidator  # noqa: E402
from memory.store import ExperienceStore  # noqa: E402

KNOWLEDGE = (
    "- EXPERIENCE ITEM: The map is a grid; P is you, H is a hole that ends the game in a loss, "
    "G is the goal.\n"
    "- EXPERIENCE ITEM: Move one cell per action with [up], [down], [left] or [right]; walking off the "
    "grid wastes a move.\n"
    "- EXPERIENCE ITEM: Plan a path to G that never steps on an H, then reply with the next move only."
)
METHODS = ("rl", "opcd", "opcd+rl")


def train_for(method: str, url: str, model: Path, args: argparse.Namespace, out: Path) -> dict:
    """Train one method for the budget; evaluate the in-memory student on the held-out maps."""
    config = ConsolidateConfig(
        method=method, run="bench", round=0, steps=1_000_000, batch=4, lr=args.lr, model=str(model),
        max_new_tokens=args.max_new_tokens, groups=2, group_size=4, out=str(out / method),
        save_every=1_000_000,
    )  # fmt: skip
    with ExperienceStore.open(url) as store:
        job = make_consolidator(config, store)
        job.setup()
        try:
            rows, started = [], time.perf_counter()
            while time.perf_counter() - started < args.budget:
                rows.append(job.train_step(len(rows) + 1))
                print(f"  {method} step {len(rows)}: " + ", ".join(
                    f"{k} {v:.3g}" for k, v in rows[-1].items() if isinstance(v, float)
                ), flush=True)  # fmt: skip
            seconds = time.perf_counter() - started
            result = _evaluate(
                HFPolicy.from_model(job.student, job.tokenizer, name=f"bench:{method}"), store, args
            )
        finally:
            job.cleanup()
    skipped = sum(r.get("skipped_groups", 0) for r in rows)
    groups = sum(r.get("groups", 0) for r in rows)
    return {"method": method, "steps": len(rows), "seconds": seconds, **result,
            "skipped": f"{skipped}/{groups}" if groups else "-"}  # fmt: skip


def _evaluate(policy: HFPolicy, store: ExperienceStore, args: argparse.Namespace) -> dict:
    config = EvalConfig(
        episodes=args.maps, batch=args.maps, sampling=SamplingParams(max_new_tokens=args.max_new_tokens)
    )
    result = evaluate(policy, store, config, run_id=store.get_run("bench"), knowledge="none")
    return {"pass_rate": result.pass_rate, "tokens": result.tokens_per_episode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="Training seconds per method.")
    parser.add_argument("--maps", type=int, default=16, help="Held-out FrozenLake maps to play.")
    parser.add_argument(
        "--train-episodes", type=int, default=8, help="Round-0 train episodes (OPCD prompts)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Longest reply, training and eval.")
    parser.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate for every method.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared).")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="Comma-separated subset of rl,opcd,opcd+rl."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = default_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/oel.db"
        with ExperienceStore.open(url) as store:
            run_id = store.create_run("bench")
            round_id = store.start_round(run_id, 0)
            checkpoint = store.checkpoint_for_path(str(model), run_id=run_id)
            policy = HFPolicy(model, device="cpu")
            rollout = RolloutConfig(
                episodes=args.train_episodes, batch=args.train_episodes,
                sampling=SamplingParams(max_new_tokens=args.max_new_tokens),
            )  # fmt: skip
            tags = EpisodeTags(run_id=run_id, round_id=round_id, checkpoint_id=checkpoint)
            played = run_rollouts(policy, store, rollout, tags=tags)
            print(
                f"round 0: {len(played.episodes)} train episodes, pass {played.success_rate:.0%}", flush=True
            )
            store.add_knowledge_version(
                run_id=run_id, round_id=round_id, text=KNOWLEDGE, item_ids=[], n_tokens=len(KNOWLEDGE) // 4
            )
            started = time.perf_counter()
            base = _evaluate(policy, store, args)
            rows = [{"method": "none", "steps": 0, "seconds": 0.0, **base, "skipped": "-"}]
            print(f"start model evaluated in {time.perf_counter() - started:.0f}s", flush=True)
            del policy
        for method in args.methods.split(","):
            rows.append(train_for(method, url, model, args, Path(tmp)))
    print()
    print(f"SmolLM2-135M, {args.budget:.0f}s training budget per method, {args.maps} held-out maps, "
          f"lr {args.lr}, knowledge: hand-written ({len(KNOWLEDGE.splitlines())} items), "
          f"RL groups 2 x 4 episodes per step")  # fmt: skip
    header = ("method", "steps", "seconds", "held-out pass", "tokens/episode", "skipped groups")
    print(f"{header[0]:<8} {header[1]:>5} {header[2]:>8} {header[3]:>13} {header[4]:>15} {header[5]:>15}")
    for r in rows:
        print(f"{r['method']:<8} {r['steps']:>5} {r['seconds']:>8.0f} {r['pass_rate']:>13.1%} "
              f"{r['tokens']:>15.1f} {r['skipped']:>15}")  # fmt: skip


if __name__ == "__main__":
    main()
