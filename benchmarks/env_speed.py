"""Benchmark of the environments: steps per second per family, TextWorld wrapper overhead, game generation.

Three tables, all measured in this one run:

1. Steps/s of every id in `envs.registry.ENVIRONMENTS`, made with
   `gymnasium.make(id)` (so gymnasium's own checking wrappers are included).
   The policy is cheap and fixed: a random admissible command where the env
   lists them, a calculator call for tool tasks, else a sample of the action
   space. Resets (seeds cycling over a few games) are inside the timed loop, as
   in a rollout. TextWorld games are generated into the cache before timing.
   An id whose module cannot be imported yet is reported, not fatal.
2. Raw TextWorld against the wrapper on the same cooking game with the same
   command list per episode (a look, an inventory, an unknown verb, then
   TextWorld's own walkthrough, which wins): raw `textworld.start(...)` with the
   wrapper's exact `EnvInfos`, our `TextWorldEnv`, and `gymnasium.make`'s
   wrapped env. Runs are interleaved and the best of `--rounds` is kept,
   because other processes share this machine; overhead is the relative loss
   in steps/s against raw.
3. Seconds to generate one game of each kind into a fresh temporary cache: the
   first of the process (which loads TextWorld's knowledge base) and the mean of
   the next ones.

    python benchmarks/env_speed.py [--seconds 2] [--rounds 5] [--games 3]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import gymnasium
import textworld
from rich.console import Console
from rich.table import Table

import envs  # noqa: F401  (registers the ids)
from envs.registry import ENVIRONMENTS
from envs.tw.env import ZMACHINE_SEED, request_infos
from envs.tw.games import ensure_game
from envs.tw.options import make_options

SEEDS = 4  # resets cycle over this many seeds (so TextWorld plays 4 cached games)


# ---- 1. steps/s per family ----


def pick_action(env: gymnasium.Env, info: dict, rng: random.Random) -> str:
    if info.get("admissible_commands"):
        return rng.choice(info["admissible_commands"])
    if "calculator" in info.get("tools", ()):
        return 'call calculator {"expression": "(12 + 30) * 2"}'
    return env.action_space.sample()


def family_steps_per_second(env_id: str, seconds: float) -> tuple[float, int]:
    env = gymnasium.make(env_id)
    env.action_space.seed(0)
    for seed in range(SEEDS):  # warm-up; generates TextWorld games if missing
        env.reset(seed=seed)
    rng = random.Random(0)
    steps, episodes = 0, 0
    start = time.perf_counter()
    _, info = env.reset(seed=0)
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, info = env.step(pick_action(env, info, rng))
        steps += 1
        if terminated or truncated:
            episodes += 1
            _, info = env.reset(seed=episodes % SEEDS)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate, steps


# ---- 2. raw TextWorld vs the wrapper ----


def episode_commands(path: str) -> list[str]:
    walkthrough = textworld.Game.load(path.replace(".z8", ".json")).metadata["walkthrough"]
    return ["look", "inventory", "xyzzy", *walkthrough]


def time_raw(path: str, commands: list[str], episodes: int) -> float:
    game = textworld.start(path, request_infos=request_infos())
    game.seed(ZMACHINE_SEED)
    start = time.perf_counter()
    for _ in range(episodes):
        game.reset()
        for command in commands:
            _, _, done = game.step(command)
    elapsed = time.perf_counter() - start
    assert done, "the walkthrough should end the episode"
    game.close()
    return elapsed


def time_wrapped(env: gymnasium.Env, commands: list[str], episodes: int) -> float:
    env.reset(seed=0)  # loads the game outside the timed loop, as the raw run does
    start = time.perf_counter()
    for _ in range(episodes):
        env.reset(seed=0)
        for command in commands:
            _, _, terminated, _, _ = env.step(command)
    elapsed = time.perf_counter() - start
    assert terminated, "the walkthrough should end the episode"
    return elapsed


def wrapper_overhead(rounds: int, episodes: int) -> list[tuple[str, float]]:
    path = str(ensure_game("cooking", make_options("cooking"), "train", 0))
    commands = episode_commands(path)
    ours = gymnasium.make("oel/TextWorld-Cooking-v0").unwrapped
    made = gymnasium.make("oel/TextWorld-Cooking-v0")
    best = {"raw": float("inf"), "ours": float("inf"), "made": float("inf")}
    for _ in range(rounds):
        best["raw"] = min(best["raw"], time_raw(path, commands, episodes))
        best["ours"] = min(best["ours"], time_wrapped(ours, commands, episodes))
        best["made"] = min(best["made"], time_wrapped(made, commands, episodes))
    steps = episodes * len(commands)
    return [(name, steps / elapsed) for name, elapsed in best.items()]


# ---- 3. generation time ----


def generation_seconds(kind: str, games: int) -> tuple[float, float]:
    saved = os.environ.get("OEL_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OEL_CACHE_DIR"] = tmp
        try:
            times = []
            for index in range(games):
                start = time.perf_counter()
                ensure_game(kind, make_options(kind), "train", index)
                times.append(time.perf_counter() - start)
        finally:
            if saved is None:
                del os.environ["OEL_CACHE_DIR"]
            else:
                os.environ["OEL_CACHE_DIR"] = saved
    rest = times[1:] or times
    return times[0], sum(rest) / len(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per family")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the raw/wrapper runs")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per raw/wrapper round")
    parser.add_argument("--games", type=int, default=3, help="games generated per kind for timing")
    args = parser.parse_args()
    console = Console()

    # Generation first: it runs in a fresh process state, so "first game" includes the one-off costs.
    gen = Table("kind", "first game (s)", "next games, mean (s)", title="TextWorld game generation")
    for kind in ("cooking", "quest"):
        first, rest = generation_seconds(kind, args.games)
        gen.add_row(kind, f"{first:.2f}", f"{rest:.2f}")

    title = "Steps per second (gymnasium.make, resets included)"
    families = Table("env id", "steps/s", "steps timed", title=title)
    for spec in ENVIRONMENTS:
        try:
            rate, steps = family_steps_per_second(spec.env_id, args.seconds)
        except ImportError as err:
            families.add_row(spec.env_id, "not importable", str(err))
            continue
        families.add_row(spec.env_id, f"{rate:,.0f}", str(steps))

    overhead = Table("cooking game 0", "steps/s", "overhead vs raw", title="Raw TextWorld vs wrapper")
    rows = wrapper_overhead(args.rounds, args.episodes)
    raw_rate = rows[0][1]
    labels = {"raw": "raw textworld.start", "ours": "TextWorldEnv", "made": "gymnasium.make(...)"}
    for name, rate in rows:
        loss = "-" if name == "raw" else f"{1 - rate / raw_rate:+.1%}"
        overhead.add_row(labels[name], f"{rate:,.0f}", loss)

    for table in (families, overhead, gen):
        console.print(table)


if __name__ == "__main__":
    main()
