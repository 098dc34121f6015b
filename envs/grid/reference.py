"""Reference figures for the grid games, exact: what a policy that never reads the map can win.

A learning figure means little without a floor beside it. Two floors are
computed here exactly, on the same maps a learner is tested on:

* a random policy over a set of moves (uniform over all four, or over
  {down, right}): its expected pass rate on a map, by recursion over the
  map's states (no sampling noise);
* the best blind policy: the one fixed move sequence that wins the most maps
  of a split. It never reads the grid, so a learner below it has not learned
  to read the map. It is chosen on `train` maps and counted on `test` maps.

The maps come from the environment itself (`reset(seed)` over a split), so
these figures follow every option the learner's environment was made with.
Solving a single state (the ceiling) is `envs.grid.solver`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cache
from typing import Any

import gymnasium

from envs.grid.base import GridEnv
from envs.grid.moves import DELTAS

MOVES = tuple(DELTAS)


def split_levels(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None, seeds: int = 512) -> list:
    """The distinct levels (maps) played by seeds 0 .. seeds-1 of `split`, in first-seen order."""
    env = gymnasium.make(env_id, split=split, **(env_kwargs or {}))
    base = env.unwrapped
    if not isinstance(base, GridEnv):
        raise ValueError(f"{env_id} is not a grid game; reference figures need one")
    levels: dict[str, Any] = {}
    for seed in range(seeds):
        _obs, info = env.reset(seed=seed)
        levels.setdefault(info["task_id"], copy.deepcopy(base._level))
    env.close()
    return list(levels.values())


def max_steps(env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """The step limit of the environment these options make."""
    env = gymnasium.make(env_id, **(env_kwargs or {}))
    limit = env.unwrapped.max_steps
    env.close()
    return limit


def _state(level: Any) -> tuple:
    return (level.player, getattr(level, "box", None))


def _after(level: Any, move: str) -> tuple[Any, bool, bool]:
    """A copy of `level` after `move`, and whether that won or lost."""
    nxt = copy.copy(level)
    outcome = nxt.move(move)
    return nxt, outcome.won, outcome.lost


def random_win_rate(level: Any, moves: Sequence[str], steps: int) -> float:
    """Exact expected pass rate of a policy drawing uniformly from `moves` each step, on one level."""

    @cache
    def value(state: tuple, left: int) -> float:
        if left == 0:
            return 0.0
        here = copy.copy(level)
        here.player = state[0]
        if state[1] is not None:
            here.box = state[1]
        total = 0.0
        for move in moves:
            nxt, won, lost = _after(here, move)
            total += 1.0 if won else 0.0 if lost else value(_state(nxt), left - 1)
        return total / len(moves)

    return value(_state(level), steps)


def blind_wins(levels: Sequence[Any], sequence: Sequence[str]) -> int:
    """How many of `levels` the fixed move `sequence` wins."""
    wins = 0
    for level in levels:
        here = level
        for move in sequence:
            here, won, lost = _after(here, move)
            if won or lost:
                wins += won
                break
    return wins


def best_blind(levels: Sequence[Any], steps: int) -> tuple[list[str], int]:
    """The fixed sequence of `steps` moves that wins the most of `levels` (first in move order on ties)."""
    best: tuple[int, list[str]] = (-1, [])

    def search(alive: list[Any], prefix: list[str], won: int) -> None:
        nonlocal best
        if len(prefix) == steps or not alive:
            if won > best[0]:
                best = (won, prefix + [MOVES[0]] * (steps - len(prefix)))
            return
        if won + len(alive) <= best[0]:
            return  # even winning every live level cannot beat the best
        for move in MOVES:
            still, wins = [], won
            for level in alive:
                nxt, w, lost = _after(level, move)
                if w:
                    wins += 1
                elif not lost:
                    still.append(nxt)
            search(still, prefix + [move], wins)

    search(list(levels), [], 0)
    return best[1], best[0]
