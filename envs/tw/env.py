"""TextWorld games as a Gymnasium environment with text observations and text actions.

TextWorld ships its own "gym" interface, which is neither gym nor gymnasium and
keeps its own registry; this class skips it and drives TextWorld's environment
stack directly (`textworld.start`: Jericho's Z-machine plus TextWorld's Inform7
wrappers, which track the game state and list admissible commands).

The contract every environment here keeps (docs/architecture.md, "Environments"):

* ``reset(seed=s)`` plays game ``s % pool_size`` of the split (see
  `envs.tw.options` for the seed-to-game map); the game is generated and cached
  the first time it is needed, so only a first reset is slow. The Z-machine's
  own random generator gets a fixed seed, so an episode is a pure function of
  the seed and the commands.
* Observations are the game's narrative, cleaned of banner, prompt and status
  line (`envs.tw.text`). Reward is the change in TextWorld's score.
* ``info``: ``admissible_commands``, ``won``, ``lost``, ``score``,
  ``max_score``, ``task_id``, ``steps``, and when the episode ends a
  ``feedback`` line saying why.
* The episode terminates when the game is won or lost and is truncated after
  ``max_steps`` steps. A command the game does not understand is a normal step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium
import textworld
from gymnasium import spaces

from envs.tw.games import GameFileError, check_game_file, ensure_game
from envs.tw.options import (
    CookingOptions,
    QuestOptions,
    TextWorldOptionError,
    check_split,
    make_options,
    options_key,
)
from envs.tw.text import (
    ACTION_CHARSET,
    CHARSET,
    MAX_ACTION_CHARS,
    MAX_OBSERVATION_CHARS,
    REFUSED_FEEDBACK,
    clean_command,
    clean_observation,
    is_meta_command,
)

ZMACHINE_SEED = 1234  # Jericho treats 0 as "unseeded", so any fixed non-zero value


@dataclass(frozen=True)
class TextWorldConfig:
    """How the TextWorld environment picks, plays and limits its games."""

    kind: str = "cooking"
    """Game kind: "cooking" (TextWorld's cooking challenge) or "quest" (custom world and quest)."""
    split: str = "train"
    """Task split: "train", or "test" for held-out games that train never plays."""
    max_steps: int = 50
    """Steps before the episode is truncated."""
    pool_size: int = 100
    """Distinct games in the split; reset(seed=s) plays game s % pool_size."""
    game_file: str | None = None
    """Play this one .z8 game (with its .json beside it) instead of the generated pool."""
    generate: bool = True
    """Generate a missing game on reset; when False a missing game is an error."""


def request_infos() -> textworld.EnvInfos:
    """What the wrapper asks TextWorld to compute each step (also used by the benchmark's raw run)."""
    return textworld.EnvInfos(admissible_commands=True, won=True, lost=True, score=True, max_score=True)


class TextWorldEnv(gymnasium.Env[str, str]):
    """A pool of generated TextWorld games behind the Gymnasium API.

    Keyword arguments are the fields of `TextWorldConfig` plus the game options
    of the kind (`CookingOptions` or `QuestOptions`), for example
    ``gymnasium.make("oel/TextWorld-Quest-v0", world_size=3, quest_length=2)``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        config_names = {f.name for f in fields(TextWorldConfig)}
        self.config = TextWorldConfig(**{k: v for k, v in kwargs.items() if k in config_names})
        check_split(self.config.split)
        if self.config.max_steps < 1 or self.config.pool_size < 1:
            raise TextWorldOptionError(
                f"max_steps={self.config.max_steps} and pool_size={self.config.pool_size} must be at least 1"
            )
        if render_mode not in (None, "ansi"):
            raise TextWorldOptionError(f"render_mode {render_mode!r}: only 'ansi' is supported")
        self.render_mode = render_mode
        self.options: CookingOptions | QuestOptions = make_options(
            self.config.kind, **{k: v for k, v in kwargs.items() if k not in config_names}
        )
        self._family = options_key(self.config.kind, self.options, self.config.split, textworld.__version__)
        if self.config.game_file is not None:
            check_game_file(self.config.game_file)

        self.observation_space = spaces.Text(max_length=MAX_OBSERVATION_CHARS, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_ACTION_CHARS, charset=ACTION_CHARSET)

        self.game_path: Path | None = None
        self.task_id: str | None = None
        self._game: textworld.Environment | None = None
        self._state: textworld.GameState | None = None
        self._observation = ""
        self._score = 0
        self._steps = 0
        self._ended = True

    # ---- gymnasium API ----

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Start game `seed % pool_size` of the split (a random one of the pool when seed is None)."""
        super().reset(seed=seed)
        path, task_id = self._pick_game(seed)
        if path != self.game_path:
            self._load(path)
        self._state = self._game.reset()
        self.task_id = task_id or f"tw-file-{self._state['extra.uuid'] or path.stem}"
        self._observation = clean_observation(self._state.feedback)
        self._score = self._state["score"] or 0
        self._steps = 0
        self._ended = False
        return self._observation, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        """Send one command; invalid commands are ordinary steps with the game's reply."""
        if self._ended:
            raise gymnasium.error.ResetNeeded(
                "TextWorldEnv.step called before reset() or after the episode ended"
            )
        command = clean_command(action)
        if is_meta_command(command):
            self._observation = REFUSED_FEEDBACK
        else:
            self._state, _, _ = self._game.step(command)
            self._observation = clean_observation(self._state.feedback)
        self._steps += 1
        score = self._state["score"] or 0
        reward = float(score - self._score)
        self._score = score
        terminated = bool(self._state["won"] or self._state["lost"])
        truncated = not terminated and self._steps >= self.config.max_steps
        info = self._info()
        if terminated or truncated:
            self._ended = True
            info["feedback"] = self._final_feedback()
        return self._observation, reward, terminated, truncated, info

    def render(self) -> str | None:
        """The last observation, in "ansi" mode."""
        return self._observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Stop the Z-machine."""
        if self._game is not None:
            self._game.close()
            self._game = None
            self.game_path = None

    # ---- helpers ----

    def _pick_game(self, seed: int | None) -> tuple[Path, str | None]:
        """The game to play and its task id (None for a given game file: named by its TextWorld uuid)."""
        if self.config.game_file is not None:
            return Path(self.config.game_file), None
        pool = self.config.pool_size
        index = seed % pool if seed is not None else int(self.np_random.integers(pool))
        path = ensure_game(self.config.kind, self.options, self.config.split, index, self.config.generate)
        return path, f"tw-{self._family}-{self.config.split}-{index}"

    def _load(self, path: Path) -> None:
        self.close()
        check_game_file(path)
        try:
            with warnings.catch_warnings():  # TextWorld silences this Jericho warning itself, but only once
                warnings.simplefilter("ignore", UserWarning)
                game = textworld.start(str(path), request_infos=request_infos())
        except Exception as err:  # TextWorld raises whatever its JSON parsing hits
            raise GameFileError(
                f"game file {path}: TextWorld could not load it or {path.with_suffix('.json')}: {err!r}"
            ) from err
        game.seed(ZMACHINE_SEED)
        self._game, self.game_path = game, path

    def _info(self) -> dict[str, Any]:
        state = self._state
        return {
            "admissible_commands": list(state["admissible_commands"] or []),
            "won": bool(state["won"]),
            "lost": bool(state["lost"]),
            "score": int(self._score),
            "max_score": int(state["max_score"]),
            "task_id": self.task_id,
            "steps": self._steps,
        }

    def _final_feedback(self) -> str:
        score = f"score {self._score} of {self._state['max_score']}"
        if self._state["won"]:
            return f"Won: the quest is complete after {self._steps} steps, {score}."
        if self._state["lost"]:
            return f"Lost: the game ended in failure after {self._steps} steps, {score}."
        limit = self.config.max_steps
        return f"Out of steps: the limit of {limit} steps was reached, quest not complete, {score}."
