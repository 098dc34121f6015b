"""ScienceWorld tasks as a gymnasium environment with text observations and text actions.

ScienceWorld (Wang et al., 2022) simulates a house with rooms, substances,
plants, animals and devices, and sets 30 tasks from an elementary science
curriculum ("boil", "find-living-thing", ...), each in tens to hundreds of
variations. The `scienceworld` package runs it in a JVM, which
`envs.scienceworld.simulator` starts (in `__init__`, so a missing Java is
reported at make time) and stops (in `close`).

How it keeps the contract of docs/architecture.md ("Environments"):

* One task per environment (`task`), by default "find-living-thing": a gold
  path of about ten steps with partial credit on the way (reaching a room,
  focusing on a living thing), so a small agent sometimes finishes it, and
  150/75/75 variations to hold out. It is played under ScienceWorld's
  simplification string (`simplification`, "easy" by default as in most
  papers: teleporting, open doors, self-watering flower pots, no electrical
  actions except on the electrical tasks; "" plays the full game).
* Splits are ScienceWorld's own variation splits of the task: train -> train,
  val -> dev, test -> test, disjoint by construction. `reset(seed=s)` plays
  variation number `s mod n` of the split's n variations (`self.variations`);
  the played seed is `episode_seed(split, s)` as everywhere, and the task id
  is "scienceworld:<task>:<variation>".
* ScienceWorld seeds its random generator with the variation number at every
  load, and the simulator runs with constant identity hash codes
  (`envs.scienceworld.simulator` says why), so an episode is a pure function
  of the variation and the commands: same text, same valid commands, same
  gold path, in any process and after any number of resets.
* The first observation is the task description, the command forms and the
  room ("look around"); each step's is the simulator's reply. A command it
  does not know is a normal step: ScienceWorld charges no move for it, our
  step budget does, and the observation adds the command forms. A command
  that fits several objects makes the simulator ask which one it means; the
  valid commands are then its numbers ("0", "1", ...).
* `info["admissible_commands"]` is the simulator's list of valid
  action-object combinations, deduplicated and sorted: about a hundred in the
  starting hallway, over a thousand in a furnished room.
* Score is ScienceWorld's progress score, 0 to 100 (`max_score` 100); reward
  is its increase. `won` when the simulator reports the task complete; `lost`
  when it reports failure (focusing on the wrong object, for one), which it
  scores -100 and we score 0. Both terminate; `max_steps` truncates.
* `reset(options={"gold": True})` also returns ScienceWorld's gold action
  sequence for the variation as `info["gold_actions"]` (slower to load).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import gymnasium

from envs.episode_info import episode_info, played_seed
from envs.scienceworld.options import (
    MISSING_PACKAGE,
    SPLIT_TO_SCIENCEWORLD,
    ScienceWorldError,
    check_max_steps,
    check_task,
)
from envs.splits import SEED_BASES, SPLITS, check_split
from envs.textspace import action_space, fit, observation_space

DEFAULT_TASK = "find-living-thing"
DEFAULT_SIMPLIFICATION = "easy"
MAX_SCORE = 100
UNKNOWN_REPLIES = ("No known action matches that input.", "Unknown action.")
"""How the simulator answers a command it cannot parse (the second after an ambiguity question)."""


def _simulator() -> ModuleType:
    """envs.scienceworld.simulator, imported on first use: it imports the optional `scienceworld` package."""
    try:
        from envs.scienceworld import simulator
    except ImportError:
        raise ScienceWorldError(MISSING_PACKAGE) from None
    return simulator


def _text(reply: str) -> str:
    """The simulator's text in our charset, without the trailing spaces it leaves on lines."""
    return fit("\n".join(line.rstrip() for line in reply.strip().splitlines()))


class ScienceWorldEnv(gymnasium.Env[str, str]):
    """One ScienceWorld task; options: split, task, simplification, max_steps, render_mode."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        *,
        split: str = "train",
        task: str = DEFAULT_TASK,
        simplification: str = DEFAULT_SIMPLIFICATION,
        max_steps: int = 50,
        render_mode: str | None = None,
    ) -> None:
        self.split = check_split(split)
        self.task = check_task(task)
        self.max_steps = check_max_steps(max_steps)
        if render_mode not in (None, "ansi"):
            raise ScienceWorldError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if not isinstance(simplification, str):
            raise ScienceWorldError(f"simplification must be a string such as 'easy', got {simplification!r}")
        self.simplification = simplification
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = action_space()
        simulator = _simulator()
        self._sim: Any = simulator.start()
        try:
            simulator.load_task(self._sim, task, 0, simplification)
            variations = {
                "train": self._sim.get_variations_train(),
                "dev": self._sim.get_variations_dev(),
                "test": self._sim.get_variations_test(),
            }
        except BaseException:
            simulator.stop(self._sim)
            raise
        self.variations: dict[str, tuple[int, ...]] = {
            split: tuple(variations[SPLIT_TO_SCIENCEWORLD[split]]) for split in SPLITS
        }
        """Our split -> the variation numbers it plays, in ScienceWorld's order."""
        self._forms = ""
        self._observation = ""
        self._task_id = ""
        self._admissible: list[str] = []
        self._seed = 0
        self._score = 0
        self._steps = 0
        self._won = self._lost = self._over = False

    # ---- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if self._sim is None:
            raise RuntimeError("ScienceWorldEnv: the environment is closed; make a new one")
        self._seed = played_seed(self, self.split, seed)
        variations = self.variations[self.split]
        variation = variations[(self._seed - SEED_BASES[self.split]) % len(variations)]
        gold = bool((options or {}).get("gold", False))
        _simulator().load_task(self._sim, self.task, variation, self.simplification, gold)
        room, sw_info = self._sim.reset()
        self._task_id = f"scienceworld:{self.task}:{variation}"
        self._forms = f"Commands look like: {', '.join(sorted(set(self._sim.get_possible_actions())))}."
        self._admissible = sorted(set(sw_info["valid"]))
        self._score = max(int(sw_info["score"]), 0)
        self._steps = 0
        self._won = self._lost = self._over = False
        description = self._sim.get_task_description().strip()
        self._observation = _text(f"{description}\n{self._forms}\n{room}")
        info = self._info("")
        if gold:
            info["gold_actions"] = list(self._sim.get_gold_action_sequence())
        return self._observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._sim is None:
            raise RuntimeError("ScienceWorldEnv: the environment is closed; make a new one")
        if self._over or not self._task_id:
            raise RuntimeError(
                "ScienceWorldEnv: call reset() before step() (the episode is over or not begun)"
            )
        self._steps += 1
        reply, _, completed, sw_info = self._sim.step(" ".join(action.split()))
        reply = _text(reply) or "(ScienceWorld gave no reply.)"
        if reply.startswith(UNKNOWN_REPLIES):
            reply = f"{reply} {self._forms}"
        raw_score = int(sw_info["score"])
        self._lost = raw_score < 0
        self._won = bool(completed) and not self._lost
        score = max(raw_score, 0)
        reward = float(score - self._score)
        self._score = score
        self._admissible = sorted(set(sw_info["valid"]))
        terminated = self._won or self._lost
        truncated = not terminated and self._steps >= self.max_steps
        self._over = terminated or truncated
        feedback = self._feedback() if self._over else ""
        self._observation = fit(f"{reply}\n{feedback}" if feedback else reply)
        return self._observation, reward, terminated, truncated, self._info(feedback)

    def render(self) -> str | None:
        return self._observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Stop the simulator's JVM (idempotent)."""
        if self._sim is not None:
            _simulator().stop(self._sim)
            self._sim = None

    # ---- text and info ---------------------------------------------------------------------------

    def _feedback(self) -> str:
        score = f"score {self._score} of {MAX_SCORE}"
        if self._won:
            return f"Won: the task is complete after {self._steps} steps, {score}."
        if self._lost:
            return (
                f"Lost: ScienceWorld ended the task as failed after {self._steps} steps "
                f"(for instance by a focus on the wrong object), {score}."
            )
        limit = self.max_steps
        return f"Out of steps: the limit of {limit} steps was reached before the task was complete, {score}."

    def _info(self, feedback: str) -> dict[str, Any]:
        return episode_info(
            won=self._won, lost=self._lost, score=self._score, max_score=MAX_SCORE, task_id=self._task_id,
            admissible_commands=list(self._admissible), seed=self._seed, split=self.split, steps=self._steps,
            feedback=feedback if self._over else None,
        )  # fmt: skip
