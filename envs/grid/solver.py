"""The optimal moves of a grid-game state, read from the observation text the agent itself saw.

Reference policies (a solver ceiling, the best blind policy) and step accuracy
(the share of visited states where the agent's move was optimal) need the
optimal moves of a state. Both work on stored text, long after the game object
is gone, so this module reads the state back from the observation: the grid
game renders the whole grid every step (envs/grid/render.py), plus the steps
left, which is all a solver needs. The game is told apart by its symbols (only
Sokoban draws walls).

An optimal move is one that starts a shortest winning line within the steps
left: breadth-first search over the game's own moves (`FrozenLakeLevel.move`
rules: the edge blocks, a hole loses; `SokobanLevel.after`: walls block, boxes
are pushed). A state from which no win fits in the steps left has no optimal
move, and step accuracy leaves it out.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from envs.grid.frozenlake import FrozenLakeLevel
from envs.grid.moves import DELTAS, parse_move, step_to
from envs.grid.sokoban import SokobanLevel

MOVES = tuple(DELTAS)
_GRID_LINE = re.compile(r"^\S( \S)+$")
_STEPS_LEFT = re.compile(r"Steps left: (\d+)\.")


@dataclass(frozen=True)
class GridState:
    """A grid game's state as the observation shows it."""

    rows: tuple[str, ...]
    """The grid, one string of symbols per row."""
    steps_left: int
    """Moves the player may still make."""


def parse_observation(text: str) -> GridState | None:
    """The last grid drawn in `text` and the steps left after it; None if there is none (or it is over)."""
    lines = text.splitlines()
    end = None
    for i in range(len(lines) - 1, -1, -1):
        if _GRID_LINE.match(lines[i].strip()):
            end = i
            break
    if end is None:
        return None
    start = end
    while start > 0 and _GRID_LINE.match(lines[start - 1].strip()):
        start -= 1
    rows = tuple(line.strip().replace(" ", "") for line in lines[start : end + 1])
    if len(rows) < 2 or len({len(r) for r in rows}) != 1:
        return None
    left = _STEPS_LEFT.search("\n".join(lines[end + 1 :]))
    if left is None:
        return None
    return GridState(rows, int(left.group(1)))


def _cells(rows: Sequence[str], symbols: str) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in symbols]


def _frozenlake(rows: Sequence[str]) -> tuple[object, Callable, Callable]:
    size = len(rows)
    players = _cells(rows, "P")
    if len(players) != 1:
        raise ValueError("a FrozenLake grid needs exactly one player")
    level = FrozenLakeLevel(size, frozenset(_cells(rows, "H")), players[0])

    def after(cell: tuple[int, int], move: str) -> tuple[int, int] | None:
        target = step_to(cell, move)
        if not level.inside(target) or target in level.holes:
            return None  # a bump wastes a move; a hole loses: neither starts a shortest win
        return target

    return level.player, after, lambda cell: cell == level.goal


def _sokoban(rows: Sequence[str]) -> tuple[object, Callable, Callable]:
    players, boxes, targets = _cells(rows, "P+"), _cells(rows, "B*"), _cells(rows, "T+*")
    if len(players) != 1 or len(boxes) != 1 or len(targets) != 1:
        raise ValueError("a Sokoban grid needs exactly one player, one box and one target")
    level = SokobanLevel(len(rows), frozenset(_cells(rows, "#")), targets[0], boxes[0], players[0])

    def after(state: tuple, move: str) -> tuple | None:
        nxt = level.after(state, move)
        return None if nxt == state else nxt

    return (level.player, level.box), after, lambda state: state[1] == level.target


def _distances_to_goal(start: Hashable, after: Callable, is_goal: Callable, limit: int) -> dict:
    """Fewest moves to a goal from every state reachable from `start` within `limit` moves."""
    depth = {start: 0}
    order = [start]
    frontier = deque([start])
    edges: dict[Hashable, list[Hashable]] = {}
    while frontier:
        state = frontier.popleft()
        if is_goal(state) or depth[state] == limit:
            continue
        edges[state] = [n for m in MOVES if (n := after(state, m)) is not None]
        for nxt in edges[state]:
            if nxt not in depth:
                depth[nxt] = depth[state] + 1
                order.append(nxt)
                frontier.append(nxt)
    to_goal: dict[Hashable, int] = {state: 0 for state in order if is_goal(state)}
    changed = True  # relax until nothing shortens (a few hundred states at most)
    while changed:
        changed = False
        for state, nexts in edges.items():
            best = min((to_goal[n] + 1 for n in nexts if n in to_goal), default=None)
            if best is not None and best < to_goal.get(state, best + 1):
                to_goal[state] = best
                changed = True
    return to_goal


def optimal_moves(state: GridState) -> list[str]:
    """The moves that start a shortest win within the steps left ([] when no win fits)."""
    game = _sokoban if any("#" in row for row in state.rows) else _frozenlake
    start, after, is_goal = game(state.rows)
    if is_goal(start) or state.steps_left < 1:
        return []
    to_goal = _distances_to_goal(start, after, is_goal, state.steps_left)
    best = to_goal.get(start)
    if best is None or best > state.steps_left:
        return []
    return [m for m in MOVES if (n := after(start, m)) is not None and to_goal.get(n) == best - 1]


def optimal_moves_of_text(text: str) -> list[str] | None:
    """`optimal_moves` of the last grid state in an observation or state text; None if it holds none."""
    state = parse_observation(text)
    if state is None:
        return None
    try:
        return optimal_moves(state)
    except ValueError:
        return None


def step_optimal(state_text: str, action: str) -> bool | None:
    """Whether `action` was an optimal move in the state drawn in `state_text`; None where no move is
    optimal (no win fits in the steps left) or the text holds no grid (not a grid game)."""
    best = optimal_moves_of_text(state_text)
    if not best:
        return None
    return parse_move(action) in best


def count_optimal(states: Iterable[str], actions: Iterable[str]) -> tuple[int, int] | None:
    """(optimal moves, states that have one) over paired states and actions; None if no state has one
    (not a grid game): the step accuracy of evaluation and of the validation gate."""
    judged = [step_optimal(s, a) for s, a in zip(states, actions, strict=True)]
    counted = [j for j in judged if j is not None]
    return (sum(counted), len(counted)) if counted else None
