"""What every grid game shares: seeds and splits, step counting, observation text and `info`.

A game supplies a level generator and a Level (its state and its rules: how a
move changes the state, and whether that won or lost). This class does the
rest identically for all games, so that the agent sees one convention:

* the observation is the grid, the player's position and the steps left, after
  one line saying what the last action did; the rules and the meaning of the
  symbols are never told. With `neighbours=True` one more line names the
  symbol one move away in each direction ("One move away: up: edge, down: H,
  left: edge, right: ."): the same facts the grid shows, in a form a small
  model reads without counting columns, and still nothing about what they mean;
* an action that is not a move is a normal step: it costs a step, earns
  nothing, and says which actions exist;
* the episode ends on a win or a loss (terminated) or when the steps run out
  (truncated); its last observation and `info["feedback"]` say why;
* `info` carries won, lost, score, max_score, task_id, admissible_commands,
  seed (the seed actually played) and split.

Levels come from `random.Random(seed)` rather than numpy so that generators read
like plain Python; `reset(seed=None)` draws that seed from `self.np_random`, so
gymnasium's seeding contract still holds.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import gymnasium

from envs.episode_info import episode_info, played_seed
from envs.grid.moves import ADMISSIBLE, Position, parse_move
from envs.grid.render import neighbour_line, position_line, render_grid
from envs.splits import SEED_BASES, check_split
from envs.textspace import action_space, fit, observation_space


class GridOptionsError(ValueError):
    """Options no level can satisfy (more holes than cells, a step limit too short to win, ...)."""


@dataclass(frozen=True)
class Outcome:
    """What one move did."""

    message: str
    """The line the player reads after the move."""
    won: bool = False
    """The move won the game."""
    lost: bool = False
    """The move lost the game."""
    feedback: str = ""
    """Why the episode ended, when it won or lost."""


class Level(Protocol):
    """A game's state and rules, as the base environment needs them."""

    player: Position

    def rows(self) -> list[str]:
        """The grid as rows of one-character symbols, player drawn in."""
        ...

    def move(self, move: str) -> Outcome:
        """Apply 'up', 'down', 'left' or 'right' in place and say what happened."""
        ...


class GridEnv(gymnasium.Env[str, str]):
    """Base class for the grid games; subclasses set `game` and implement `_generate`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    game: ClassVar[str]

    def __init__(
        self, *, split: str, max_steps: int, render_mode: str | None, neighbours: bool = False
    ) -> None:
        if max_steps < 1:
            raise GridOptionsError(f"max_steps must be at least 1, got {max_steps}")
        if render_mode not in (None, "ansi"):
            raise GridOptionsError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.split = check_split(split)
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.neighbours = bool(neighbours)
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._level: Level | None = None
        self._task_id = ""
        self._seed = 0
        self._steps = 0
        self._won = self._lost = self._over = False

    @abstractmethod
    def _generate(self, rng: random.Random, index: int) -> Level:
        """A fresh level for `self.split`, solvable within `self.max_steps`; `index` is the seed's
        position in the split (games that list their levels play level `index`)."""

    # ---- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._seed = played_seed(self, self.split, seed)
        self._level = self._generate(random.Random(self._seed), self._seed - SEED_BASES[self.split])
        layout = "/".join(self._level.rows())
        self._task_id = f"{self.game}-{self.max_steps}steps:{layout}"
        self._steps = 0
        self._won = self._lost = self._over = False
        return self._observation("A new game begins."), self._info("")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._level is None or self._over:
            raise RuntimeError(f"{self.game}: call reset() before step() (the episode is over or not begun)")
        self._steps += 1
        move = parse_move(action)
        if move is None:
            shown = fit(" ".join(action.split()), 60)
            outcome = Outcome(f"'{shown}' is not a valid action. Valid actions: {' '.join(ADMISSIBLE)}.")
        else:
            outcome = self._level.move(move)
        self._won, self._lost = outcome.won, outcome.lost
        terminated = outcome.won or outcome.lost
        truncated = not terminated and self._steps >= self.max_steps
        self._over = terminated or truncated
        feedback = outcome.feedback if terminated else ""
        if truncated:
            feedback = f"You ran out of steps: the game allows at most {self.max_steps} moves."
        message = outcome.message if not feedback else f"{outcome.message}\n{feedback}"
        return self._observation(message), float(outcome.won), terminated, truncated, self._info(feedback)

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._level is None:
            return None
        return render_grid(self._level.rows())

    # ---- shared text and info ----------------------------------------------------------------------

    def _observation(self, message: str) -> str:
        assert self._level is not None
        steps_left = self.max_steps - self._steps
        rows = self._level.rows()
        lines = [message, render_grid(rows), position_line(self._level.player)]
        if self.neighbours:
            lines.append(neighbour_line(rows, self._level.player))
        if not self._over:
            lines.append(f"Steps left: {steps_left}.")
        return fit("\n".join(lines))

    def _info(self, feedback: str) -> dict[str, Any]:
        return episode_info(
            won=self._won, lost=self._lost, score=int(self._won), max_score=1, task_id=self._task_id,
            admissible_commands=list(ADMISSIBLE), seed=self._seed, split=self.split, steps=self._steps,
            feedback=feedback if self._over else None,
        )  # fmt: skip
