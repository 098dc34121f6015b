"""FrozenLake and Sokoban: solvable levels, rules, splits, determinism, action parsing, bad options.

The solvers here read the grid from the observation text and apply the rules
as this test understands them, independently of envs.grid; their plan is then
played through the real environment, which must report a win.
"""

from __future__ import annotations

from collections import deque
from itertools import combinations

import gymnasium
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.grid import GridOptionsError
from envs.splits import SEED_SPAN, SPLITS, TEST_SEED_BASE, VAL_SEED_BASE, SplitError, split_of_seed

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def grid_of(observation: str) -> list[list[str]]:
    rows = [line.split() for line in observation.splitlines()]
    return [row for row in rows if len(row) > 1 and all(len(cell) == 1 for cell in row)]


def find(grid: list[list[str]], symbols: str) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(grid) for c, cell in enumerate(row) if cell in symbols]


def bfs(start, neighbours, is_goal):
    parents = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if is_goal(state):
            plan = []
            while parents[state] is not None:
                state, move = parents[state]
                plan.append(move)
            return plan[::-1]
        for move, nxt in neighbours(state):
            if nxt not in parents:
                parents[nxt] = (state, move)
                queue.append(nxt)
    return None


def solve_frozenlake(observation: str) -> list[str] | None:
    grid = grid_of(observation)
    n = len(grid)
    holes = set(find(grid, "H"))
    (goal,) = find(grid, "G")
    (start,) = find(grid, "P")

    def neighbours(cell):
        for move, (dr, dc) in MOVES.items():
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < n and 0 <= nxt[1] < n and nxt not in holes:
                yield move, nxt

    return bfs(start, neighbours, lambda cell: cell == goal)


def solve_sokoban(observation: str) -> list[str] | None:
    grid = grid_of(observation)
    walls = set(find(grid, "#"))
    (target,) = find(grid, "T+*")
    (box,) = find(grid, "B*")
    (player,) = find(grid, "P+")

    def neighbours(state):
        me, crate = state
        for move, (dr, dc) in MOVES.items():
            nxt = (me[0] + dr, me[1] + dc)
            if nxt in walls:
                continue
            if nxt == crate:
                pushed = (crate[0] + dr, crate[1] + dc)
                if pushed not in walls:
                    yield move, (nxt, pushed)
            else:
                yield move, (nxt, crate)

    return bfs((player, box), neighbours, lambda state: state[1] == target)


SOLVERS = {"oel/FrozenLake-v0": solve_frozenlake, "oel/Sokoban-v0": solve_sokoban}


@pytest.mark.parametrize("env_id", sorted(SOLVERS))
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_sampled_level_is_won_by_an_independent_bfs_within_the_limit(env_id, split):
    env = gymnasium.make(env_id, split=split)
    limit = env.unwrapped.max_steps
    for seed in range(60):
        obs, info = env.reset(seed=seed)
        plan = solve_frozenlake(obs) if env_id.endswith("FrozenLake-v0") else solve_sokoban(obs)
        assert plan is not None and 1 <= len(plan) <= limit, (seed, obs)
        for i, move in enumerate(plan):
            obs, reward, terminated, truncated, info = env.step(f"I will go [{move}]")
            assert terminated == (i == len(plan) - 1)
        assert reward == 1.0 and info["won"] and not info["lost"] and not truncated
        assert info["score"] == info["max_score"] == 1
        assert info["feedback"] and info["feedback"] in obs


def test_frozenlake_default_is_the_oel_setting():
    env = gymnasium.make("oel/FrozenLake-v0")
    obs, info = env.reset(seed=3)
    grid = grid_of(obs)
    assert len(grid) == 3 and all(len(row) == 3 for row in grid)
    assert grid[0][0] == "P" and grid[2][2] == "G" and len(find(grid, "H")) == 2
    assert env.unwrapped.max_steps == 5
    assert info["admissible_commands"] == ["[up]", "[down]", "[left]", "[right]"]
    text = obs.lower()
    assert not any(word in text for word in ("hole", "goal", "ice", "win", "lose", "rule", "symbol"))


def test_frozenlake_3x3_layouts_are_the_solvable_ones():
    """All seen maps are solvable 2-hole maps; together they cover most of the few that exist."""
    cells = [(r, c) for r in range(3) for c in range(3)][1:-1]
    solvable = set()
    for holes in combinations(cells, 2):
        rows = [["." for _ in range(3)] for _ in range(3)]
        rows[0][0], rows[2][2] = "P", "G"
        for r, c in holes:
            rows[r][c] = "H"
        text = "\n".join(" ".join(row) for row in rows)
        if solve_frozenlake(text) is not None:
            solvable.add("/".join("".join(row) for row in rows))
    env = gymnasium.make("oel/FrozenLake-v0")
    seen = {env.reset(seed=s)[1]["task_id"].split(":", 1)[1] for s in range(300)}
    assert seen <= solvable
    assert len(seen) >= len(solvable) - 2


def test_falling_into_a_hole_loses_with_feedback():
    env = gymnasium.make("oel/FrozenLake-v0")
    for seed in range(50):
        obs, _ = env.reset(seed=seed)
        grid = grid_of(obs)
        if grid[0][1] == "H":
            obs, reward, terminated, truncated, info = env.step("[right]")
            assert terminated and not truncated and reward == 0.0
            assert info["lost"] and not info["won"] and "hole" in info["feedback"].lower()
            return
    pytest.fail("no map with a hole right of the start in 50 seeds")


def test_invalid_actions_cost_a_step_and_running_out_truncates():
    env = gymnasium.make("oel/Sokoban-v0")
    obs0, _ = env.reset(seed=7)
    for i in range(5):
        obs, reward, terminated, truncated, info = env.step("jump over the box")
        assert reward == 0.0 and not terminated
        assert "not a valid action" in obs and "[up]" in obs
        assert grid_of(obs) == grid_of(obs0)
        assert truncated == (i == 4)
    assert "ran out of steps" in info["feedback"] and not info["won"] and not info["lost"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step("[up]")


@pytest.mark.parametrize(
    "text, move",
    [
        ("[UP]", "up"),
        ("  w ", "up"),
        ("a", "left"),
        ("[ s ]", "down"),
        ("D.", "right"),
        ("first [left], no wait: [Right]", "right"),
        ("move down", "down"),
    ],
)
def test_action_spellings(text, move):
    env = gymnasium.make("oel/FrozenLake-v0", size=4, holes=0)
    env.reset(seed=0)
    env.unwrapped._level.player = (1, 1)
    obs, *_ = env.step(text)
    dr, dc = MOVES[move]
    assert find(grid_of(obs), "P") == [(1 + dr, 1 + dc)]


def test_reset_is_deterministic_per_seed_and_varies_across_seeds():
    for env_id in SOLVERS:
        a, b = gymnasium.make(env_id), gymnasium.make(env_id)
        for seed in (0, 1, 99):
            assert a.reset(seed=seed) == b.reset(seed=seed)
            assert a.step("[down]") == b.step("[down]")
        assert len({a.reset(seed=s)[1]["task_id"] for s in range(40)}) > 10


def test_each_split_plays_seeds_of_its_own_range_only():
    for env_id in SOLVERS:
        made = {split: gymnasium.make(env_id, split=split) for split in SPLITS}
        played = {
            split: {
                env.reset(seed=s)[1]["seed"]
                for s in [0, 1, 127, 128, SEED_SPAN - 1, SEED_SPAN, 3 * SEED_SPAN + 2]
            }
            for split, env in made.items()
        }
        for split, seeds in played.items():
            assert {split_of_seed(s) for s in seeds} == {split}
        assert not played["train"] & played["val"] and not played["val"] & played["test"]
        assert not played["train"] & played["test"]
        assert min(played["val"]) >= VAL_SEED_BASE and min(played["test"]) >= TEST_SEED_BASE
        assert made["train"].reset()[1]["seed"] < VAL_SEED_BASE
        test = made["test"]
        assert test.reset(seed=5)[0] == test.reset(seed=5 + SEED_SPAN)[0]


def _tasks(env_id: str, split: str, seeds: range, **kwargs) -> set[str]:
    env = gymnasium.make(env_id, split=split, **kwargs)
    return {env.reset(seed=s)[1]["task_id"] for s in seeds}


@pytest.mark.parametrize(
    "env_id, kwargs",
    [("oel/Sokoban-v0", {}), ("oel/FrozenLake-v0", {"size": 4}), ("oel/FrozenLake-4x4-v0", {}),
     ("oel/FrozenLake-v0", {"split_by": "layout"})],
)  # fmt: skip
def test_large_task_spaces_split_layouts_three_ways(env_id, kwargs):
    tasks = {split: _tasks(env_id, split, range(300), **kwargs) for split in SPLITS}
    assert all(tasks.values())
    assert not tasks["train"] & tasks["val"] and not tasks["train"] & tasks["test"]
    assert not tasks["val"] & tasks["test"]


def test_frozenlake_4x4_holds_out_over_80_maps_seed_i_playing_the_ith():
    """334 solvable maps (counted independently); seeds 0..n-1 of a split visit each of its maps once."""
    holes_cells = [(r, c) for r in range(4) for c in range(4)][1:-1]
    solvable = 0
    for holes in combinations(holes_cells, 3):
        rows = [["." for _ in range(4)] for _ in range(4)]
        for r, c in holes:
            rows[r][c] = "H"
        rows[0][0], rows[3][3] = "P", "G"
        plan = solve_frozenlake("\n".join(" ".join(row) for row in rows))
        solvable += plan is not None and len(plan) <= 7
    assert solvable == 334
    counts = {}
    for split in SPLITS:
        env = gymnasium.make("oel/FrozenLake-4x4-v0", split=split)
        seen = []
        for s in range(400):
            task = env.reset(seed=s)[1]["task_id"]
            if task in seen:
                break
            seen.append(task)
        counts[split] = len(seen)
        assert env.reset(seed=counts[split])[1]["task_id"] == seen[0]  # the listing wraps around
    assert sum(counts.values()) == 334 and counts["test"] >= 80


def test_frozenlake_3x3_shares_its_19_maps_across_splits_unless_asked():
    shared = {split: _tasks("oel/FrozenLake-v0", split, range(400)) for split in SPLITS}
    assert len(shared["train"] | shared["test"]) == 19 and shared["train"] == shared["test"]
    split = {split: _tasks("oel/FrozenLake-v0", split, range(60), split_by="layout") for split in SPLITS}
    assert sum(len(t) for t in split.values()) == 19


def test_neighbour_line_names_the_adjacent_symbols_and_is_off_by_default():
    plain = gymnasium.make("oel/FrozenLake-4x4-v0")
    assert "One move away" not in plain.reset(seed=3)[0]
    for env_id in SOLVERS:
        env = gymnasium.make(env_id, neighbours=True)
        for seed in range(20):
            obs, _ = env.reset(seed=seed)
            obs, *_ = env.step("[right]")
            grid = grid_of(obs)
            (me,) = find(grid, "P+")
            line = next(line for line in obs.splitlines() if line.startswith("One move away: "))
            named = dict(part.split(": ") for part in line.removeprefix("One move away: ").split(", "))
            for move, (dr, dc) in MOVES.items():
                r, c = me[0] + dr, me[1] + dc
                inside = 0 <= r < len(grid) and 0 <= c < len(grid[0])
                assert named[move] == (grid[r][c] if inside else "edge")


@pytest.mark.parametrize(
    "env_id, kwargs, match",
    [
        ("oel/FrozenLake-v0", {"holes": 8}, "cannot place 8"),
        ("oel/FrozenLake-v0", {"holes": 5}, "at most 4 holes"),
        ("oel/FrozenLake-v0", {"size": 4, "max_steps": 5}, "at least 6 moves"),
        ("oel/FrozenLake-v0", {"size": 1}, "at least 2"),
        ("oel/Sokoban-v0", {"inner_walls": 20}, "inner_walls"),
        ("oel/Sokoban-v0", {"size": 3}, "at least 4"),
        ("oel/Sokoban-v0", {"max_steps": 0}, "max_steps"),
    ],
)
def test_impossible_options_raise_clear_errors(env_id, kwargs, match):
    with pytest.raises(GridOptionsError, match=match):
        gymnasium.make(env_id, **kwargs)


def test_unknown_split_is_rejected():
    with pytest.raises(SplitError, match="unknown split 'dev'"):
        gymnasium.make("oel/FrozenLake-v0", split="dev")
