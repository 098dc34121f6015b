"""The solver, step optimality and the exact reference floors of the grid games.

The solver is checked against the independent BFS solvers of test_grid.py
(their shortest plan's length, and a win when its moves are played); the
floors against the counts the held-out issue made by enumeration (3x3 with 2
holes: the best blind sequence wins 6 of the 19 maps, random over {down,
right} wins 19.7%) and against brute force over every move sequence.
"""

from __future__ import annotations

import copy
import itertools

import gymnasium
import pytest

import envs  # noqa: F401
from envs.grid.reference import MOVES, best_blind, blind_wins, max_steps, random_win_rate, split_levels
from envs.grid.solver import optimal_moves_of_text, parse_observation, step_optimal
from tests.envs.test_grid import SOLVERS


@pytest.mark.parametrize("env_id, kwargs", [("oel/FrozenLake-4x4-v0", {}), ("oel/Sokoban-v0", {})])
def test_solver_moves_start_a_shortest_plan_and_win(env_id, kwargs):
    solve = SOLVERS["oel/Sokoban-v0" if "Sokoban" in env_id else "oel/FrozenLake-v0"]
    env = gymnasium.make(env_id, split="test", neighbours=True, **kwargs)
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        while True:
            shortest = len(solve(obs))
            moves = optimal_moves_of_text(obs)
            assert moves, obs
            for move in moves:  # every move named starts a plan one shorter
                probe = gymnasium.make(env_id, split="test", **kwargs)
                probe.reset(seed=seed)
                probe.unwrapped._level = copy.deepcopy(env.unwrapped._level)
                probe.unwrapped._steps = env.unwrapped._steps
                after, _r, term, _t, pinfo = probe.step(f"[{move}]")
                assert pinfo["won"] if term else len(solve(after)) == shortest - 1
            obs, _r, term, trunc, info = env.step(f"[{moves[-1]}]")
            if term or trunc:
                break
        assert info["won"]


def test_step_optimal_judges_moves_and_skips_hopeless_or_gridless_states():
    obs = "A new game begins.\nP . H\n. H .\n. . G\nYou are at row 1, column 1.\nSteps left: 5."
    assert step_optimal(obs, "[down]") is True
    assert step_optimal(obs, "I go [right]") is False  # into a hole
    assert step_optimal(obs, "[up]") is False  # a bump
    assert step_optimal(obs.replace("Steps left: 5.", "Steps left: 3."), "[down]") is None  # 4 moves needed
    assert step_optimal("What is 2 + 2?", "[down]") is None
    assert parse_observation("no grid here") is None


def test_reference_floors_on_the_19_maps_of_3x3():
    levels = split_levels("oel/FrozenLake-v0", "train", seeds=600)
    assert len(levels) == 19
    steps = max_steps("oel/FrozenLake-v0")
    sequence, wins = best_blind(levels, steps)
    brute = max(blind_wins(levels, plan) for plan in itertools.product(MOVES, repeat=steps))
    assert wins == brute == blind_wins(levels, sequence) == 6
    rate = sum(random_win_rate(level, ["down", "right"], steps) for level in levels) / len(levels)
    assert rate == pytest.approx(0.19736842, abs=1e-6)
    uniform = sum(random_win_rate(level, list(MOVES), steps) for level in levels) / len(levels)
    assert uniform == pytest.approx(0.016, abs=5e-4)  # the 1.6%
