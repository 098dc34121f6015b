"""BabyAI levels (from the `minigrid` package) played as text: six commands in, a description out.

minigrid's BabyAI levels give the agent a 7x7 egocentric view, a mission
("go to the red ball") and seven integer actions. This class plays one level
behind the project's text contract (docs/architecture.md, "Environments"):

* **Observation**: what the last command did, then the mission, the visible
  objects and walls, the cell in front and the carried object
  (`envs.babyai.describe`, which says how it differs from GLAM's BabyAI-Text),
  and the steps left. The view is read from minigrid's own partial view
  (`gen_obs_grid`: the same cells and visibility mask its `image` encodes).
* **Commands**: turn left, turn right, go forward, pick up, drop, toggle
  (minigrid's `done` is left out: no BabyAI level here uses it). They are
  matched after folding case and whitespace (a surrounding `[...]` and a final
  '.' are forgiven). Anything else is an invalid-action step: minigrid is not
  touched, but the step counts against the level's step budget and lowers the
  reward of a later win, and the observation lists the commands.
* **Reward**: minigrid's, 1 - 0.9 * steps / max_steps on success and 0
  otherwise, where steps counts invalid ones too (with none it equals
  minigrid's reward exactly). `won` is minigrid's success, `lost` a level
  ending without one (only strict levels do that), `score` the reward,
  `max_score` 1.0. The episode is truncated after the level's max_steps
  (minigrid's own limit, or the `max_steps` option).
* **Splits**: `reset(seed=s)` plays seed `episode_seed(split, s)`; from it a
  `random.Random` draws successive minigrid seeds until the instance's key
  (mission, the full grid encoding, the agent's cell, facing and load) hashes
  into the split (`envs.splits.draw_for_split`). No instance is ever played in
  two splits, whichever seeds drew it, and the same (split, seed) always gives
  the same instance, so the same commands give the same observations.
  `task_id` is the level and a 16-hex-digit hash of that key.

`minigrid` is imported when the environment is made, not when this module is,
so that `envs` imports stay cheap and a missing package is one line at make
time. minigrid imports pygame, but nothing here renders, so no window opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import random
from typing import Any, ClassVar

import gymnasium

from envs.babyai.describe import Cell, Offset, View, describe, outcome_line
from envs.episode_info import episode_info, played_seed
from envs.splits import check_split, draw_for_split
from envs.textspace import action_space, fit, observation_space

LEVELS = (
    "BabyAI-GoToRedBallGrey-v0", "BabyAI-GoToRedBall-v0", "BabyAI-GoToObj-v0", "BabyAI-GoToLocal-v0",
    "BabyAI-GoToDoor-v0", "BabyAI-GoToObjDoor-v0", "BabyAI-GoTo-v0",
    "BabyAI-PickupLoc-v0", "BabyAI-PickupDist-v0", "BabyAI-Pickup-v0", "BabyAI-PutNextLocal-v0",
    "BabyAI-OpenRedDoor-v0", "BabyAI-OpenDoor-v0", "BabyAI-OpenDoorColor-v0", "BabyAI-OpenDoorLoc-v0",
    "BabyAI-OpenTwoDoors-v0", "BabyAI-Open-v0", "BabyAI-UnlockLocal-v0", "BabyAI-Unlock-v0",
    "BabyAI-ActionObjDoor-v0", "BabyAI-SynthLoc-v0", "BabyAI-BossLevel-v0",
)  # fmt: skip
"""The minigrid level ids this environment plays (each solved by minigrid's BabyAIBot in the tests)."""
COMMANDS = {
    "turn left": "left",
    "turn right": "right",
    "go forward": "forward",
    "pick up": "pickup",
    "drop": "drop",
    "toggle": "toggle",
}
"""Each command and the name of the minigrid action it plays."""
ADMISSIBLE = list(COMMANDS)
TASK_HASH_CHARS = 16


class BabyAIOptionsError(ValueError):
    """A level this environment does not play, a bad option, or minigrid not installed."""


def parse_command(text: str) -> str | None:
    """The command `text` names (case and spacing folded, `[...]` and a final '.' forgiven), or None."""
    token = " ".join(text.casefold().split()).removesuffix(".").rstrip()
    if token.startswith("[") and token.endswith("]"):
        token = " ".join(token[1:-1].split()).removesuffix(".").rstrip()
    return token if token in COMMANDS else None


def success_reward(steps: int, max_steps: int) -> float:
    """minigrid's reward for a mission completed in `steps` of `max_steps`."""
    return 1.0 - 0.9 * steps / max_steps


def instance_key(level: Any) -> str:
    """What names a level instance: mission, full grid encoding, agent cell and facing, carried object."""
    grid = level.grid.encode()
    carried = level.carrying
    load = f"{carried.color} {carried.type}" if carried is not None else "-"
    x, y = (int(v) for v in level.agent_pos)
    digest = hashlib.sha256(grid.tobytes()).hexdigest()
    return f"{level.mission}|{grid.shape}|{x},{y}|{int(level.agent_dir)}|{load}|{digest}"


def _cell(obj: Any) -> Cell:
    state = ""
    if obj.type == "door":
        state = "locked" if obj.is_locked else "open" if obj.is_open else "closed"
    return Cell(obj.type, obj.color, state)


def perceive(level: Any) -> View:
    """The agent's view in a minigrid level: visible non-empty cells by (forward, right) offset."""
    grid, visible = level.gen_obs_grid()
    me = (grid.width // 2, grid.height - 1)  # where minigrid puts the agent in its view
    things: dict[Offset, Cell] = {}
    for i in range(grid.width):
        for j in range(grid.height):
            obj = grid.get(i, j)
            if obj is not None and visible[i, j] and (i, j) != me:
                things[(me[1] - j, i - me[0])] = _cell(obj)
    carried = _cell(level.carrying) if level.carrying is not None else None
    x, y = (int(v) for v in level.agent_pos)
    return View(things=things, carried=carried, position=(x, y))


def _make_level(level: str, max_steps: int | None) -> Any:
    if importlib.util.find_spec("minigrid") is None:
        raise BabyAIOptionsError("BabyAI levels need the minigrid package: pip install minigrid==3.2.0")
    importlib.import_module("minigrid")  # importing it registers the BabyAI-* ids with gymnasium
    options = {} if max_steps is None else {"max_steps": max_steps}
    return gymnasium.make(level, disable_env_checker=True, **options).unwrapped


class BabyAITextEnv(gymnasium.Env[str, str]):
    """One BabyAI level as a text game; options: level, split, max_steps (default: the level's own)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        *,
        level: str = "BabyAI-GoToLocal-v0",
        split: str = "train",
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if level not in LEVELS:
            raise BabyAIOptionsError(f"unknown BabyAI level {level!r}; supported: {', '.join(LEVELS)}")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise BabyAIOptionsError(f"max_steps must be a whole number of at least 1, got {max_steps!r}")
        if render_mode not in (None, "ansi"):
            raise BabyAIOptionsError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.split = check_split(split)
        self.level = level
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = action_space()
        self.level_env = _make_level(level, max_steps)
        """The minigrid level being played (for solvers and tests; acting on it bypasses this class)."""
        self._view: View | None = None
        self._task_id = ""
        self._seed = 0
        self._steps = 0
        self._max_steps = 0
        self._score = 0.0
        self._won = self._lost = self._over = False

    # ---- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._seed = played_seed(self, self.split, seed)
        level_seeds = random.Random(self._seed)
        with contextlib.redirect_stdout(io.StringIO()):  # minigrid prints every sample it rejects
            key = draw_for_split(self.split, lambda: self._draw(level_seeds.getrandbits(63)), lambda k: k)
        self._task_id = f"{self.level}:{hashlib.sha256(key.encode()).hexdigest()[:TASK_HASH_CHARS]}"
        self._view = perceive(self.level_env)
        self._max_steps = int(self.level_env.max_steps)
        self._steps = 0
        self._score = 0.0
        self._won = self._lost = self._over = False
        return self._observation("A new episode begins.", ""), self._info("")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._view is None or self._over:
            raise RuntimeError(f"{self.level}: call reset() before step() (the episode is over or not begun)")
        self._steps += 1
        command = parse_command(action)
        terminated = False
        if command is None:
            shown = fit(" ".join(action.split()), 60)
            message = f"'{shown}' is not a valid command. Valid commands: {', '.join(ADMISSIBLE)}."
        else:
            before = self._view
            level_action = self.level_env.actions[COMMANDS[command]]
            _, level_reward, terminated, _, _ = self.level_env.step(level_action)
            self._view = perceive(self.level_env)
            message = outcome_line(command, before, self._view)
            if terminated:
                self._won, self._lost = level_reward > 0, level_reward <= 0
                self._score = success_reward(self._steps, self._max_steps) if self._won else 0.0
        truncated = not terminated and self._steps >= self._max_steps
        self._over = terminated or truncated
        feedback = self._feedback() if self._over else ""
        return self._observation(message, feedback), self._score, terminated, truncated, self._info(feedback)

    def render(self) -> str | None:
        """In 'ansi' mode, minigrid's full map of the level (which the agent itself never sees)."""
        if self.render_mode != "ansi" or self._view is None:
            return None
        return self.level_env.pprint_grid()

    def close(self) -> None:
        self.level_env.close()

    # ---- helpers ---------------------------------------------------------------------------------

    def _draw(self, level_seed: int) -> str:
        self.level_env.reset(seed=level_seed)
        return instance_key(self.level_env)

    def _feedback(self) -> str:
        mission = self.level_env.mission
        if self._won:
            return (
                f"You completed the mission ({mission}) in {self._steps} steps: score {self._score:.2f} of 1."
            )
        if self._lost:
            return f"You failed the mission ({mission}): the level ended without success."
        return f"You ran out of steps: this level allows at most {self._max_steps} steps."

    def _observation(self, message: str, feedback: str) -> str:
        assert self._view is not None
        lines = [message, *([feedback] if feedback else []), *describe(self._view, self.level_env.mission)]
        if not self._over:
            lines.append(f"Steps left: {self._max_steps - self._steps}.")
        return fit("\n".join(lines))

    def _info(self, feedback: str) -> dict[str, Any]:
        return episode_info(
            won=self._won, lost=self._lost, score=self._score, max_score=1.0, task_id=self._task_id,
            admissible_commands=list(ADMISSIBLE), seed=self._seed, split=self.split, steps=self._steps,
            feedback=feedback if self._over else None,
        )  # fmt: skip
