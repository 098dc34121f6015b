"""Sokoban as in OEL: push the one box onto the target in a small walled room.

A 6x6 room is a ring of walls around a 4x4 floor with a few extra wall blocks,
one box, one target and the player. Levels are made by random placement and
kept only if a breadth-first search over (player, box) states solves them
within the step limit (default 5, the OEL grid-game budget) and they are not
already solved. Random placement + BFS is exact here and much simpler than
reverse play, because the state space is a few hundred states.

Symbols: `#` wall, `_` floor, `P` player, `B` box, `T` target, `*` the box on
the target, `+` the player on the target. None of this, nor that boxes are
pushed and cannot be pulled, is told to the agent.

There are hundreds of thousands of layouts, so train, val and test never share
one: a hash of the layout decides its split (envs/splits.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from envs.grid.base import GridEnv, GridOptionsError, Outcome
from envs.grid.moves import Position, step_to
from envs.grid.search import shortest_solution
from envs.splits import draw_for_split

State = tuple[Position, Position]


@dataclass
class SokobanLevel:
    """Walls and target are fixed; player and box move."""

    size: int
    walls: frozenset[Position]
    target: Position
    box: Position
    player: Position

    def rows(self) -> list[str]:
        def symbol(cell: Position) -> str:
            if cell in self.walls:
                return "#"
            if cell == self.box:
                return "*" if cell == self.target else "B"
            if cell == self.player:
                return "+" if cell == self.target else "P"
            return "T" if cell == self.target else "_"

        return ["".join(symbol((r, c)) for c in range(self.size)) for r in range(self.size)]

    def after(self, state: State, move: str) -> State | None:
        """The (player, box) state after `move`, or None if a wall or an unpushable box blocks it."""
        player, box = state
        nxt = step_to(player, move)
        if nxt in self.walls:
            return None
        if nxt != box:
            return nxt, box
        pushed = step_to(box, move)
        if pushed in self.walls:
            return None
        return nxt, pushed

    def move(self, move: str) -> Outcome:
        state = self.after((self.player, self.box), move)
        if state is None:
            return Outcome(f"You tried to move {move} but did not move.")
        pushed = state[1] != self.box
        self.player, self.box = state
        message = f"You moved {move} and pushed the box." if pushed else f"You moved {move}."
        if self.box == self.target:
            return Outcome(message, won=True, feedback="The box is on the target. The game is won.")
        return Outcome(message)

    def moves_to_solve(self, limit: int) -> int | None:
        """Fewest moves to put the box on the target, or None if more than `limit` are needed."""
        return shortest_solution(
            (self.player, self.box),
            lambda s: [n for m in ("up", "down", "left", "right") if (n := self.after(s, m)) is not None],
            lambda s: s[1] == self.target,
            limit,
        )


def check_options(size: int, inner_walls: int, max_steps: int) -> None:
    """Raise GridOptionsError if no level with these options can exist."""
    if size < 4:
        raise GridOptionsError(f"Sokoban size must be at least 4 (walls around a 2x2 floor), got {size}")
    floor = (size - 2) ** 2
    if inner_walls < 0 or inner_walls > floor - 4:
        raise GridOptionsError(
            f"Sokoban {size}x{size} has {floor} floor cells; inner_walls must be 0..{floor - 4} "
            f"(a box, a target, the player and a cell to push from), got {inner_walls}"
        )


def generate_level(
    rng: random.Random, size: int, inner_walls: int, max_steps: int, split: str
) -> SokobanLevel:
    """A random level of `split`, solvable within `max_steps` and not already solved."""
    check_options(size, inner_walls, max_steps)
    border = {(r, c) for r in range(size) for c in range(size) if r in (0, size - 1) or c in (0, size - 1)}
    floor = [(r, c) for r in range(1, size - 1) for c in range(1, size - 1)]

    def draw() -> SokobanLevel | None:
        *walls, target, box, player = rng.sample(floor, inner_walls + 3)
        level = SokobanLevel(size, frozenset(border | set(walls)), target, box, player)
        moves = level.moves_to_solve(max_steps)
        return level if moves is not None and moves > 0 else None

    return draw_for_split(split, draw, key=lambda level: "sokoban:" + "/".join(level.rows()))


class SokobanEnv(GridEnv):
    """`oel/Sokoban-v0`: options size (6), inner_walls (2), max_steps (5), split, neighbours."""

    game = "sokoban"

    def __init__(
        self,
        size: int = 6,
        inner_walls: int = 2,
        max_steps: int = 5,
        split: str = "train",
        neighbours: bool = False,
        render_mode: str | None = None,
    ) -> None:
        check_options(size, inner_walls, max_steps)
        super().__init__(split=split, max_steps=max_steps, render_mode=render_mode, neighbours=neighbours)
        self.size = size
        self.inner_walls = inner_walls

    def _generate(self, rng: random.Random, index: int) -> SokobanLevel:
        return generate_level(rng, self.size, self.inner_walls, self.max_steps, self.split)
