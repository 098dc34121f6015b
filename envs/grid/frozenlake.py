"""FrozenLake as in OEL: reach the far corner of a small frozen lake without falling through a hole.

The default is OEL's setting: 3x3, 2 holes, start top-left, goal bottom-right,
at most 5 moves, one random map per seed, kept only if it is solvable within
the step limit. Symbols: `P` the player, `H` a hole, `G` the goal, `.` ice;
the agent is not told this, nor that holes end the game, nor that the edge
blocks. It has to learn the rules from experience.

Splits (envs/splits.py): 3x3 with 2 holes has only 19 solvable maps, so by
default the splits share maps and differ only in seeds, as in OEL (`split_by
= "seed"`). When the options give at least LAYOUT_SPLIT_MIN possible hole
placements (4x4 with 3 holes has 364, 334 of them solvable) the maps
themselves are split (`split_by = "layout"`, also available on 3x3 when asked
for): train, val and test never share a map. Spaces small enough to list
(at most ENUMERATE_MAX placements) are listed once, and seed i of a split plays
its i-th map, so seeds 0 .. n-1 of `test` are every held-out map once; larger
ones draw maps at random and keep those whose layout hashes to the split.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from math import comb

from envs.grid.base import GridEnv, GridOptionsError, Outcome
from envs.grid.moves import Position, step_to
from envs.grid.search import shortest_solution
from envs.splits import draw_for_split, split_listing

LAYOUT_SPLIT_MIN = 64
"""Hole placements from which `split_by = "auto"` splits the maps themselves."""
ENUMERATE_MAX = 20_000
"""Hole placements up to which a layout-split space is listed (seed i -> map i) rather than sampled."""
SPLIT_BY = ("auto", "layout", "seed")


@dataclass
class FrozenLakeLevel:
    """One map and where the player stands on it."""

    size: int
    holes: frozenset[Position]
    player: Position = (0, 0)

    @property
    def goal(self) -> Position:
        return (self.size - 1, self.size - 1)

    def inside(self, cell: Position) -> bool:
        return 0 <= cell[0] < self.size and 0 <= cell[1] < self.size

    def rows(self) -> list[str]:
        def symbol(cell: Position) -> str:
            if cell == self.player:
                return "P"
            if cell in self.holes:
                return "H"
            return "G" if cell == self.goal else "."

        return ["".join(symbol((r, c)) for c in range(self.size)) for r in range(self.size)]

    def move(self, move: str) -> Outcome:
        target = step_to(self.player, move)
        if not self.inside(target):
            return Outcome(f"You tried to move {move} but stayed where you were.")
        self.player = target
        moved = f"You moved {move}."
        if target in self.holes:
            return Outcome(moved, lost=True, feedback="You fell into a hole. The game is lost.")
        if target == self.goal:
            return Outcome(moved, won=True, feedback="You reached the goal. The game is won.")
        return Outcome(moved)

    def safe_neighbours(self, cell: Position) -> list[Position]:
        """Cells one move from `cell` that are on the map and not holes (for the solvability check)."""
        nxt = (step_to(cell, move) for move in ("up", "down", "left", "right"))
        return [c for c in nxt if self.inside(c) and c not in self.holes]


def check_options(size: int, holes: int, max_steps: int) -> None:
    """Raise GridOptionsError if no map with these options can be won."""
    if size < 2:
        raise GridOptionsError(f"FrozenLake size must be at least 2, got {size}")
    free = size * size - 2
    path_cells = 2 * (size - 1) - 1
    if holes < 0 or holes > free:
        raise GridOptionsError(f"FrozenLake {size}x{size} has {free} cells for holes; cannot place {holes}")
    if holes > free - path_cells:
        raise GridOptionsError(
            f"FrozenLake {size}x{size} with {holes} holes: every path from start to goal needs "
            f"{path_cells} free cells, so at most {free - path_cells} holes fit"
        )
    if max_steps < 2 * (size - 1):
        raise GridOptionsError(
            f"FrozenLake {size}x{size} needs at least {2 * (size - 1)} moves to reach the goal, "
            f"but max_steps={max_steps}"
        )


def layout_key(level: FrozenLakeLevel) -> str:
    """What names a map for splitting: its rows with the player at the start."""
    return "frozenlake:" + "/".join(FrozenLakeLevel(level.size, level.holes).rows())


def solvable(level: FrozenLakeLevel, max_steps: int) -> bool:
    """Whether the goal can be reached from the start within `max_steps` moves."""
    moves = shortest_solution(level.player, level.safe_neighbours, lambda c: c == level.goal, max_steps)
    return moves is not None


def splits_layouts(size: int, holes: int, split_by: str) -> bool:
    """Whether these options split the maps themselves (else only seeds separate the splits)."""
    if split_by not in SPLIT_BY:
        raise GridOptionsError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    if split_by == "auto":
        return comb(size * size - 2, holes) >= LAYOUT_SPLIT_MIN
    return split_by == "layout"


@lru_cache(maxsize=16)
def split_maps(size: int, holes: int, max_steps: int, split: str) -> tuple[FrozenLakeLevel, ...]:
    """Every solvable map of `split`, in the split's fixed order (for spaces of at most ENUMERATE_MAX)."""
    cells = [(r, c) for r in range(size) for c in range(size)][1:-1]
    levels = (FrozenLakeLevel(size, frozenset(placed)) for placed in itertools.combinations(cells, holes))
    return tuple(split_listing([lv for lv in levels if solvable(lv, max_steps)], layout_key, split))


def generate_level(
    rng: random.Random, size: int, holes: int, max_steps: int, split: str, split_by: str = "auto",
    index: int | None = None,
) -> FrozenLakeLevel:  # fmt: skip
    """A map of `split` solvable within `max_steps`: map `index` of the split's listing where maps are
    listed, else a random one (belonging to `split` when maps are split by layout)."""
    check_options(size, holes, max_steps)
    by_layout = splits_layouts(size, holes, split_by)
    if by_layout and index is not None and comb(size * size - 2, holes) <= ENUMERATE_MAX:
        maps = split_maps(size, holes, max_steps, split)
        chosen = maps[index % len(maps)]
        return FrozenLakeLevel(size, chosen.holes)
    cells = [(r, c) for r in range(size) for c in range(size)][1:-1]

    def draw() -> FrozenLakeLevel | None:
        level = FrozenLakeLevel(size, frozenset(rng.sample(cells, holes)))
        return level if solvable(level, max_steps) else None

    return draw_for_split(split, draw, layout_key if by_layout else None)


class FrozenLakeEnv(GridEnv):
    """`oel/FrozenLake-v0`: options size, holes, max_steps (default: fewest moves to the goal + 1),
    split, split_by (auto, layout or seed), neighbours (a line naming the four adjacent cells)."""

    game = "frozenlake"

    def __init__(
        self,
        size: int = 3,
        holes: int = 2,
        max_steps: int | None = None,
        split: str = "train",
        split_by: str = "auto",
        neighbours: bool = False,
        render_mode: str | None = None,
    ) -> None:
        max_steps = 2 * (size - 1) + 1 if max_steps is None else max_steps
        check_options(size, holes, max_steps)
        super().__init__(split=split, max_steps=max_steps, render_mode=render_mode, neighbours=neighbours)
        self.size = size
        self.holes = holes
        self.layout_split = splits_layouts(size, holes, split_by)
        self.split_by = "layout" if self.layout_split else "seed"

    def _generate(self, rng: random.Random, index: int) -> FrozenLakeLevel:
        split_by = self.split_by
        return generate_level(rng, self.size, self.holes, self.max_steps, self.split, split_by, index)
