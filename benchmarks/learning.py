"""The learning table: what each way of learning does to the embedded model's held-out pass rate.

One run, one store, the same start (SmolLM2-135M-Instruct) and the same
held-out maps for every row. Rows:

- floors: a uniform random policy and a random policy over {down, right}
  (FrozenLake only), computed exactly on the same maps by enumeration;
- in context, the start model alone: OEL's text protocol; scored actions;
  scored with the person-written rules (`runs/frozenlake-rules.md`) in
  context; scored with knowledge it extracted itself from a round of its
  own scored episodes;
- training, each an `oel loop` run of `--rounds` rounds from the same start
  (collection, consolidation, evaluation of M_r+1 every round, deployment):
  RL (GRPO on the round's groups, RAGEN's filter; with the group baseline,
  and with the per-state baseline and centred pushes), SFT on the policy's own wins (expert
  iteration), OPCD of the person-written rules, OPCD+RL; every row trains
  the top 8 of the 30 layers at lr 2e-5, AdamW carried across rounds; and
  the quick preset's consolidation: SFT on its own wins, 10 steps at lr 7e-6,
  deploying the best-validated of M_r and its updates (`keep_best`);
- a 2:4 sparse-ternary student distilled (scored OPCD) from the best dense
  model of the training rows, deployed packed.

Columns: pass rate with its 95% Wilson interval and counts, generated
tokens per episode (scored: the chosen commands' tokens), CPU minutes of the
row (this process's user+system time, threads included), optimizer updates.
Below it, every training row's pass rate per round.

    python benchmarks/learning.py                        # FrozenLake, 128 maps, 5 rounds (~1 h)
    python benchmarks/learning.py --env sokoban --rows scored rl
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its sibling
# benchmarks/envs.py would shadow the `envs` package; drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "runs" / "frozenlake-rules.md"
ENVS = {"frozenlake": "oel/FrozenLake-v0", "sokoban": "oel/Sokoban-v0", "cooking": "oel/TextWorld-Cooking-v0"}
TRAINED = ("rl", "rl-state", "sft", "sft-gate", "opcd", "opcd+rl")
ROWS = ("floors", "text", "scored", "rules", "extracted", *TRAINED, "ternary")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def random_floor(env_id: str, seeds: range, moves: list[str]) -> tuple[float, int]:
    """Expected pass rate of a policy picking uniformly among `moves` at each step, by enumeration."""
    import gymnasium

    total = 0.0
    for seed in seeds:
        env = gymnasium.make(env_id, split="test")
        env.reset(seed=seed)
        max_steps = env.unwrapped.max_steps
        wins = 0
        for plan in itertools.product(moves, repeat=max_steps):
            env.reset(seed=seed)
            for move in plan:
                _obs, _r, terminated, truncated, info = env.step(move)
                if terminated or truncated:
                    wins += bool(info.get("won"))
                    break
        total += wins / len(moves) ** max_steps
    return total / len(seeds), len(seeds)


def loop_config(args: argparse.Namespace, name: str, method: str, tmp: Path) -> dict:
    """The run file of one training row: the quick preset's settings, the method swapped in."""
    consolidate = {"steps": 1, "lr": 2e-5, "weight_decay": 0.01, "micro_batch": 16, "save_every": 10,
                   "train_layers": 8, "carry_optimizer": True}  # fmt: skip
    if method in ("rl", "rl-state", "opcd+rl"):
        consolidate |= {"method": method.replace("-state", ""), "source": "round", "env_id": args.env_id,
                        "groups": 16, "keep_top": args.keep_top}  # fmt: skip
    if method == "rl-state":
        consolidate |= {"baseline": "state", "center": 1.0}
    if method in ("sft", "opcd"):
        consolidate |= {"batch": 16, "steps": args.pool_steps, "temperature": 1.0}
    if method == "sft-gate":  # runs/frozenlake-quick.toml's consolidation
        consolidate |= {"method": "sft", "batch": 16, "steps": 10, "lr": 7e-6, "temperature": 1.0,
                        "eval_every": 5, "eval_episodes": 32, "keep_best": True}  # fmt: skip
    if method == "opcd+rl":
        consolidate |= {"temperature": 1.0}
    return {
        "run": {"name": name, "env_id": args.env_id, "rounds": args.rounds, "action_mode": "scored",
                "checkpoints": str(tmp / "checkpoints")},
        "sampling": {"temperature": 0.0, "max_new_tokens": 64},
        "collect": {"episodes": 128, "group_size": 8, "batch": 32, "temperature": 2.0},
        "extract": {"source": "file", "file": str(RULES)} if "opcd" in method else {"source": "none"},
        "consolidate": {"method": method, **consolidate},
        "evaluate": {"episodes": args.maps, "batch": 32, "conditions": ["consolidated"]},
    }  # fmt: skip


def main() -> None:  # noqa: C901 - one table, one straight script
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="frozenlake", choices=list(ENVS))
    parser.add_argument("--maps", type=int, default=128, help="held-out maps per row")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every training row")
    parser.add_argument("--keep-top", type=float, default=1.0, help="RAGEN's filter for the RL rows")
    parser.add_argument(
        "--pool-steps", type=int, default=4, help="steps per round of SFT and OPCD (batch 16)"
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--db", help="keep the store here (default: a temporary folder)")
    args = parser.parse_args()
    args.env_id = ENVS[args.env]

    import envs  # noqa: F401
    from agent.extractor import PolicyTextGenerator, policy_token_counter
    from agent.hf_policy import HFPolicy
    from agent.model import default_model_path
    from agent.policy import SamplingParams
    from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
    from distill.consolidation import consolidate
    from memory import queries
    from memory.knowledge.authored import add_authored_knowledge, read_items
    from memory.knowledge.extract import ExtractionConfig, extract_knowledge
    from memory.stats import format_rate
    from memory.store import ExperienceStore
    from oel.evaluation import EvalConfig, evaluate
    from oel.loop import OnlineLoop
    from oel.run_config import parse_loop_config

    tmp = Path(tempfile.mkdtemp(prefix="oel-learning-"))
    url = args.db or f"sqlite:///{tmp / 'oel.db'}"
    start = default_model_path()
    table: list[tuple[str, str, str, str, str]] = []
    curves: dict[str, list[str]] = {}
    maps = range(args.maps)
    with ExperienceStore.open(url) as store:
        bench = store.ensure_run("bench")
        start_id = store.checkpoint_for_path(str(start), run_id=bench)
        policy = HFPolicy(start, device="cpu")

        def held_out(
            label: str,
            mode: str,
            temperature: float,
            knowledge: int | None = None,
            *,
            run_id: int = bench,
            checkpoint: int = start_id,
            model=None,
            updates: str = "0",
            cpu0: float | None = None,
        ) -> None:
            cpu0 = cpu_seconds() if cpu0 is None else cpu0
            progress(f"{label}: {args.maps} held-out maps")
            config = EvalConfig(
                env_id=args.env_id,
                episodes=args.maps,
                batch=32,
                action_mode=mode,
                sampling=SamplingParams(temperature=temperature, max_new_tokens=64, seed=0),
            )
            r = evaluate(
                lambda: model or policy,
                store,
                config,
                run_id=run_id,
                checkpoint_id=checkpoint,
                knowledge_version_id=knowledge,
            )
            tokens = "-" if r["tokens_per_episode"] is None else f"{r['tokens_per_episode']:.1f}"
            table.append(
                (
                    label,
                    format_rate(r["wins"], r["episodes"]),
                    tokens,
                    f"{(cpu_seconds() - cpu0) / 60:.1f}",
                    updates,
                )
            )

        if "floors" in args.rows and args.env == "frozenlake":
            progress("floors: exact random-policy pass rates")
            for label, moves in (
                ("uniform random (floor)", ["[up]", "[down]", "[left]", "[right]"]),
                ("random over {down, right} (floor)", ["[down]", "[right]"]),
            ):
                rate, n = random_floor(args.env_id, maps, moves)
                table.append((label, f"{100 * rate:.1f}% (expected, {n} maps)", "-", "-", "-"))
        if "text" in args.rows:
            held_out("text mode, none (OEL protocol, T=0.7)", "text", 0.7)
        if "scored" in args.rows:
            held_out("scored mode, none (greedy)", "scored", 0.0)
        rules_id = None
        if {"rules", "opcd", "opcd+rl", "ternary"} & set(args.rows):
            rules_id, _text, _new = add_authored_knowledge(
                store, bench, read_items(RULES), author="benchmark", count_tokens=policy_token_counter(policy)
            )
        if "rules" in args.rows:
            held_out("scored + person-written rules in context (greedy)", "scored", 0.0, rules_id)
        if "extracted" in args.rows:
            cpu0 = cpu_seconds()
            progress("extracted: a round of 32 scored episodes, then the policy extracts knowledge")
            # a run of its own, so the extraction accumulates with nothing (not with the rules above)
            own = store.ensure_run("bench-extracted")
            own_start = store.checkpoint_for_path(str(start), run_id=own)
            round_id = store.start_round(own, 0)
            rollout = RolloutConfig(
                env_id=args.env_id,
                batch=32,
                action_mode="scored",
                sampling=SamplingParams(temperature=1.0, seed=0),
            )
            played = run_rollouts(
                policy, store, rollout, seeds=range(32), tags=EpisodeTags(own, round_id, own_start)
            )
            result = extract_knowledge(
                store,
                PolicyTextGenerator(policy, SamplingParams(seed=0)),
                [e.episode_id for e in played.episodes],
                run_id=own,
                round_id=round_id,
                extractor_checkpoint_id=own_start,
                count_tokens=policy_token_counter(policy),
                config=ExtractionConfig(max_new_tokens=64),
            )
            progress(f"extracted: {result.n_items} items, {result.n_tokens} tokens: {result.text[:200]!r}")
            held_out(
                f"scored + own extracted knowledge ({result.n_items} items, greedy)",
                "scored",
                0.0,
                result.version_id,
                run_id=own,
                checkpoint=own_start,
                cpu0=cpu0,
            )

        best: tuple[float, str, int, str] | None = None
        for method in [m for m in TRAINED if m in args.rows]:
            cpu0 = cpu_seconds()
            name = f"learn-{method}"
            progress(f"{method}: {args.rounds} rounds of the loop")
            loop = OnlineLoop(parse_loop_config(loop_config(args, name, method, tmp), name), store)
            summaries = loop.run()
            curve = [s.results["evaluate"]["conditions"]["consolidated"] for s in summaries]
            curves[method] = [format_rate(c["wins"], c["episodes"]) for c in curve]
            last = curve[-1]
            steps = queries.loss_curves(store, loop.run_id)
            updates = int(sum((m or {}).get("updates", 1) for m in steps["metrics"]))
            tokens = "-" if last["tokens_per_episode"] is None else f"{last['tokens_per_episode']:.1f}"
            label = {
                "rl": "RL (GRPO, filtered groups)",
                "rl-state": "RL (GRPO, per-state baseline, centred pushes)",
                "sft": "SFT on own won episodes (expert iteration)",
                "sft-gate": "SFT on own wins, validation-gated (the quick preset)",
                "opcd": "OPCD of the person-written rules",
                "opcd+rl": "OPCD+RL (rules)",
            }[method]
            table.append(
                (
                    f"{label}, {args.rounds} rounds",
                    format_rate(last["wins"], last["episodes"]),
                    tokens,
                    f"{(cpu_seconds() - cpu0) / 60:.1f}",
                    str(updates),
                )
            )
            if best is None or last["pass_rate"] > best[0]:
                best = (last["pass_rate"], name, last["checkpoint_id"], method)
            loop._policy = None  # free the deployed model before the next row

        if "ternary" in args.rows and best is not None:
            cpu0 = cpu_seconds()
            _rate, name, checkpoint, method = best
            path = store.checkpoint_path(checkpoint)
            progress(f"ternary: a 2:4 student of {name}'s last model ({path}), scored OPCD against it")
            run_id = store.get_run(name)
            add_authored_knowledge(store, run_id, read_items(RULES), author="benchmark")
            result = consolidate(
                {
                    "run": name,
                    "round": args.rounds - 1,
                    "method": "opcd",
                    "action_mode": "scored",
                    "model": path,
                    "teacher": path,
                    "student": "ternary",
                    "pattern": "2:4",
                    "steps": 12,
                    "batch": 16,
                    "lr": 3e-5,
                    "temperature": 1.0,
                    "save_every": 12,
                    "out": str(tmp / "ternary"),
                },
                store,
                on_step=lambda m: progress(f"  step {m['step']}: KL {m['kl']:.4f}"),
            )
            student = HFPolicy(result.out, device="cpu")
            bits = store.checkpoint_info(result.checkpoint_id)["bits_per_weight"]
            held_out(
                f"2:4 ternary student of the best ({method}), {bits:.2f} bits/weight, greedy",
                "scored",
                0.0,
                run_id=run_id,
                checkpoint=result.checkpoint_id,
                model=student,
                updates="12",
                cpu0=cpu0,
            )

    from rich.console import Console
    from rich.table import Table

    out = Table(
        title=f"Learning on held-out {args.env_id} ({args.maps} maps, the same for every row), SmolLM2-135M"
    )
    for column in ("method", "pass rate [95% CI] (wins/n)", "tokens/ep", "CPU min", "updates"):
        out.add_column(column, justify="right" if column != "method" else "left")
    for row in table:
        out.add_row(*row)
    console = Console(width=200)
    console.print(out)
    if curves:
        rounds = Table(title="pass rate of M_r+1 after each round (the same held-out maps)")
        rounds.add_column("method")
        for r in range(args.rounds):
            rounds.add_column(f"round {r}", justify="right")
        for method, values in curves.items():
            rounds.add_row(method, *values)
        console.print(rounds)
    print(f"store: {url}")


if __name__ == "__main__":
    main()
