"""Scored consolidation updates on SmolLM2-135M: samples and updates per CPU-minute, and what they learn.

Run: `python benchmarks/consolidation.py [--maps 40] [--steps 40] [--batch 32] [--rows ...]`.

The same data and loss for every row: the states a solver visits on the first
`--maps` train maps of FrozenLake 4x4 (3 holes, the neighbour line), labelled
with every optimal move, and the scored cross-entropy of those moves under
the candidate softmax (what `credit` and scored `sft` train on). Each row
trains a fresh copy of the model for `--steps` AdamW updates of `--batch`
states drawn with the same seed, and reports:

- CPU seconds of this process (all threads) spent in the updates, the trunk
  cache's fills included (a state's frozen blocks are computed the first time
  it is drawn; later epochs reuse them);
- samples (states trained on) and updates per CPU-minute, and their ratio to
  the first row, today's path before the trunk cache: every block of every
  prompt recomputed each step, the top 8 blocks trained;
- what the updates bought: the step accuracy (the share of states whose
  greedy move is optimal) on the solver's states of the 36 val maps, before
  and after, and the last update's loss. Accuracy is measured outside the
  timed part.

Rows: `full-8` (the path before), `cache-8`, `cache-4`, `cache-2` (the trunk
cache with that many trained top blocks), `cache-4-lr3` (top 4 at 3x the
learning rate). The cache lives in the process and is keyed by the frozen
blocks, so rows with the same number of trained blocks share it: `cache-4`
starts cold and pays every fill, `cache-4-lr3` runs after it and finds every
state already computed, which is the loop's situation (the deployed policy
filled the cache when it played the states). The machine is shared by nothing
else while this runs; run one benchmark at a time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

ROWS = {
    "full-8": (False, 8, 1.0),
    "cache-8": (True, 8, 1.0),
    "cache-4": (True, 4, 1.0),
    "cache-2": (True, 2, 1.0),
    "cache-4-lr3": (True, 4, 3.0),
}
"""Row -> (trunk cache, trained top blocks, learning-rate multiple)."""


def solver_states(tokenizer, split: str, maps: int) -> list:
    """(ScoredState, optimal candidate indices) along a solver's play of the first `maps` maps of `split`."""
    import gymnasium

    import envs  # noqa: F401
    from agent.policy import encode_chat
    from agent.prompts import build_scored_messages
    from distill.candidates import ScoredState
    from envs.grid.solver import optimal_moves_of_text

    env = gymnasium.make("oel/FrozenLake-4x4-v0", split=split, neighbours=True)
    out = []
    for seed in range(maps):
        obs, info = env.reset(seed=seed)
        commands = list(info["admissible_commands"])
        ids = [
            tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in commands
        ]
        while True:
            best = optimal_moves_of_text(obs)
            prompt = encode_chat(tokenizer, build_scored_messages(obs, commands))
            state = ScoredState(obs, prompt, commands, ids, 0, [0.0] * len(commands), 1.0)
            out.append((state, [commands.index(f"[{m}]") for m in best]))
            obs, _r, terminated, truncated, info = env.step(f"[{best[0]}]")
            if terminated or truncated:
                break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--maps", type=int, default=40, help="train maps whose solver states form the pool")
    parser.add_argument("--steps", type=int, default=40, help="updates per row")
    parser.add_argument("--batch", type=int, default=32, help="states per update")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from agent.model import default_model_path, load_model
    from agent.trunk_cache import TrunkCache
    from distill.candidates import candidate_log_pi
    from distill.students import train_top_layers

    path = default_model_path()
    _model, tokenizer = load_model(path)
    pool, val = solver_states(tokenizer, "train", args.maps), solver_states(tokenizer, "val", 36)
    pad = tokenizer.pad_token_id or 0
    results = []
    for name in args.rows:
        use_cache, layers, lr_mult = ROWS[name]
        torch.manual_seed(0)
        model, _tok = load_model(path, dtype=torch.float32)
        train_top_layers(model, layers)
        cache = TrunkCache(model, layers, pad) if use_cache else None

        def log_pi(states, model=model, cache=cache):
            if cache is not None:
                return cache.log_pi(states, [1.0] * len(states))
            prompts, candidates = [s.prompt_ids for s in states], [s.candidate_ids for s in states]
            return candidate_log_pi(model, prompts, candidates, [1.0] * len(states), pad)

        def accuracy(data, log_pi=log_pi):
            hits = 0
            with torch.no_grad():
                for i in range(0, len(data), 32):
                    part = data[i : i + 32]
                    for lp, (_s, best) in zip(log_pi([s for s, _b in part]), part, strict=True):
                        hits += int(lp.argmax()) in best
            return hits / len(data)

        start_acc = accuracy(val)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=args.lr * lr_mult, weight_decay=0.01
        )
        rng = random.Random(0)
        cpu = 0.0
        loss_value = 0.0
        curve = []
        for step in range(1, args.steps + 1):
            batch = rng.sample(pool, min(args.batch, len(pool)))
            began = time.process_time()
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for i in range(0, len(batch), args.micro_batch):
                part = batch[i : i + args.micro_batch]
                lps = log_pi([s for s, _b in part])
                loss = -torch.stack(
                    [torch.logsumexp(lp[b], 0) for lp, (_s, b) in zip(lps, part, strict=True)]
                )
                loss = loss.sum() / len(batch)
                loss.backward()
                total += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            cpu += time.process_time() - began
            loss_value = total
            if step % 10 == 0 or step == args.steps:
                curve.append(f"{accuracy(val):.2f}")
            print(f"[{name}] step {step}: loss {total:.3f}, {cpu:.0f} CPU s", file=sys.stderr, flush=True)
        samples = args.steps * min(args.batch, len(pool))
        results.append((name, cpu, samples, start_acc, curve, loss_value))
        del model, cache, optimizer

    base_per_min = results[0][2] / results[0][1] * 60
    table = Table(
        title=f"Scored consolidation updates, SmolLM2-135M, FrozenLake 4x4 solver states "
        f"({len(pool)} train states, {args.steps} x {args.batch}, val: {len(val)} states)"
    )
    for column in ("row", "CPU s", "updates/CPU-min", "samples/CPU-min", "ratio", "val step acc (every 10)",
                   "last loss"):  # fmt: skip
        table.add_column(column, justify="left" if column == "row" else "right")
    for name, cpu, samples, start_acc, curve, loss_value in results:
        per_min = samples / cpu * 60
        updates = f"{args.steps / cpu * 60:.2f}"
        table.add_row(
            name, f"{cpu:.0f}", updates, f"{per_min:.0f}", f"{per_min / base_per_min:.1f}x",
            f"{start_acc:.2f} -> " + " ".join(curve), f"{loss_value:.3f}",
        )  # fmt: skip
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
