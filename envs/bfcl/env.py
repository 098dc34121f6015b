"""BFCL v4 multi-turn function-calling tasks as a gymnasium environment with text actions.

One episode is one entry of a BFCL multi-turn category. `reset` shows the
functions the entry offers (per class: what the class is, then each function's
description and JSON-schema arguments, in the layout of envs/tools/env.py) and
the user's first request. The agent acts with the tool-action format of
`envs.tools.actions`: `call <function> {json}` runs the function on the
episode's backends and the observation is its result (an error from the
backend is a result too); `answer <text>` replies to the user, ends the turn
and shows the next request. After the last turn's answer the episode ends
and `envs.bfcl.judge` decides it as BFCL's checker would: reward 1 and `won`
when every turn passes, else `lost`, with `feedback` naming the first failing
turn and check. A turn allows `max_calls_per_turn` actions before its answer;
one more that is not an answer truncates the episode (BFCL force-terminates
an entry that loops, which also fails it). The default, 10, covers every
ground-truth turn but two of long_context (34 calls each). In miss_func a
held-out function is listed from its turn on, but, as in BFCL, a call to it
runs earlier too (one entry's ground truth needs that).

Splits follow the scenario, not the category: the four categories reuse the
same numbered scenarios (multi_turn_base_17 and multi_turn_miss_param_17 are
one task, the second with a parameter withheld), so the key hashed by
`envs.splits` is the scenario number and a held-out scenario stays held out in
every category. Seed i of a split plays the i-th entry of the split's listing
(`split_listing`), modulo its size. `task_id` is BFCL's entry id. The game does
not know the admissible commands, so `info` has no `admissible_commands`; like
the tool tasks it lists the functions offered in `info["tools"]`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import gymnasium

from envs.bfcl.backends import Backends, check_backends
from envs.bfcl.data import BFCLError, Call, Entry, Function, load_entries
from envs.bfcl.judge import judge
from envs.episode_info import episode_info, played_seed
from envs.splits import SEED_BASES, check_split, split_listing
from envs.textspace import action_space, fit, observation_space
from envs.tools.actions import USAGE, Answer, ToolActionError, parse_tool_action

INTRO = (
    "You act for a user through the functions below. Call one function per action; "
    "`answer <text>` replies to the user, ends your turn and brings the user's next request."
)


def scenario_key(entry: Entry) -> str:
    """What decides an entry's split: its scenario number, shared by the categories."""
    return f"bfcl-multi-turn:{entry.index}"


def describe_functions(functions: tuple[Function, ...]) -> str:
    """Each class's description once, then its functions as '- name: summary' and their JSON schema."""
    lines: list[str] = []
    owner = ""
    for function in functions:
        if function.owner != owner:
            owner = function.owner
            lines.append(f"{owner}: {function.owner_description}")
        schema = json.dumps(function.parameters, sort_keys=True)
        lines.append(f"- {function.name}: {function.summary}\n  arguments (JSON schema): {schema}")
    return "\n".join(lines)


class BFCLMultiTurnEnv(gymnasium.Env[str, str]):
    """`oel/BFCL-MultiTurn-v0`: options split, category ("multi_turn_base"), max_calls_per_turn (10)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        *,
        split: str = "train",
        category: str = "multi_turn_base",
        max_calls_per_turn: int = 10,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise BFCLError(f"render_mode must be None (no rendering), got {render_mode!r}")
        if (
            isinstance(max_calls_per_turn, bool)
            or not isinstance(max_calls_per_turn, int)
            or max_calls_per_turn < 1
        ):
            raise BFCLError(
                f"max_calls_per_turn must be an integer of at least 1, got {max_calls_per_turn!r}"
            )
        self.split = check_split(split)
        self.category = category
        self.max_calls_per_turn = max_calls_per_turn
        self.render_mode = render_mode
        entries = load_entries(category)
        check_backends({name for entry in entries for name in entry.involved_classes})
        self.entries = split_listing(entries, scenario_key, self.split)
        """The entries of this split, seed i -> entries[i % len(entries)]."""
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._entry: Entry | None = None
        self._backends: Backends | None = None
        self._calls: list[list[Call]] = []
        self._turn_actions = 0
        self._seed = 0
        self._steps = 0
        self._won = self._lost = self._over = False

    # ---- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._seed = played_seed(self, self.split, seed)
        self._entry = self.entries[(self._seed - SEED_BASES[self.split]) % len(self.entries)]
        self._backends = Backends(self._entry)
        self._calls = [[]]
        self._turn_actions = 0
        self._steps = 0
        self._won = self._lost = self._over = False
        functions = describe_functions(self._entry.offered(0))
        text = f"{INTRO}\nFunctions you can call:\n{functions}\nActions: {USAGE}\n{self._request()}"
        return self._observation(text), self._info("")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._entry is None or self._over:
            raise RuntimeError("BFCL: call reset() before step() (the episode is over or not begun)")
        self._steps += 1
        reward, feedback = 0.0, ""
        try:
            parsed = parse_tool_action(action)
        except ToolActionError as err:
            parsed, message = None, str(err)
        if isinstance(parsed, Answer):
            message, feedback = self._answer(parsed.text)
            reward = float(self._won)
        else:
            self._turn_actions += 1
            if self._turn_actions > self.max_calls_per_turn:
                message = f"Turn {self.turn + 1} allows {self.max_calls_per_turn} actions, then an answer."
                feedback = f"You ran out of actions in turn {self.turn + 1} without answering."
            elif parsed is not None:
                message = f"{parsed.tool} returned: {self.call(parsed.tool, parsed.args)}"
        terminated = self._won or self._lost
        truncated = not terminated and bool(feedback)
        self._over = terminated or truncated
        text = message if not feedback else f"{message}\n{feedback}"
        return self._observation(text), reward, terminated, truncated, self._info(feedback)

    # ---- what LangChain tools and steps share ---------------------------------------------------------

    @property
    def turn(self) -> int:
        """The current turn, 0-based."""
        return len(self._calls) - 1

    @property
    def offered(self) -> tuple[Function, ...]:
        """The functions the agent may call now."""
        if self._entry is None:
            raise RuntimeError("BFCL: call reset() first; no episode, no functions")
        return self._entry.offered(self.turn)

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one function on the episode's backends and record it in the current turn; return its result.

        Steps use it for `call` actions; LangChain tools (envs.bfcl.langchain_tools)
        call it directly, which records the call for the judge without taking a step.
        """
        if self._backends is None or self._over:
            raise RuntimeError(
                "BFCL: call reset() before calling functions (the episode is over or not begun)"
            )
        call = Call(name, (), dict(arguments))
        self._calls[-1].append(call)
        return self._backends.execute(call)

    # ---- turns, text and info ----------------------------------------------------------------------

    def _answer(self, text: str) -> tuple[str, str]:
        assert self._entry is not None
        message = f"You answered: {text}"
        if self.turn + 1 < len(self._entry.turns):
            self._calls.append([])
            self._turn_actions = 0
            added = [f for f in self.offered if self._entry.held_out.get(f.name) == self.turn]
            if added:
                message += f"\nNew functions you can call:\n{describe_functions(tuple(added))}"
            return f"{message}\n{self._request()}", ""
        verdict = judge(self._entry, self._calls)
        self._won, self._lost = verdict.won, not verdict.won
        return message, verdict.reason

    def _request(self) -> str:
        assert self._entry is not None
        return f"Turn {self.turn + 1} of {len(self._entry.turns)}. User: {self._entry.turns[self.turn]}"

    def _observation(self, text: str) -> str:
        left = self.max_calls_per_turn - self._turn_actions
        if not self._over:
            text += f"\nCalls left this turn: {left}." if left else "\nNo calls left this turn: answer now."
        return fit(text)

    def _info(self, feedback: str) -> dict[str, Any]:
        assert self._entry is not None
        return episode_info(
            won=self._won, lost=self._lost, score=int(self._won), max_score=1, task_id=self._entry.id,
            tools=[f.name for f in self.offered], turn=self.turn + 1, turns=len(self._entry.turns),
            seed=self._seed, split=self.split, steps=self._steps, feedback=feedback if self._over else None,
        )  # fmt: skip
