"""One gymnasium environment for every tool task: a question, some LangChain tools, an exact answer.

A tool-task family is a ToolTaskSpec: the tools every task offers, a generator
`make_task(rng) -> Task`, and a checker `check(answer, task) -> bool`. A task may
bring tools of its own (ToolLookup binds its tools to that task's database).
The environment shows the question and each tool's name, description and JSON
schema (LangChain's own OpenAI-style conversion, so any LangChain tool renders
the same way), runs the tools the agent calls and returns their output as the
next observation, and ends the episode on an answer (reward 1 if `check`
accepts it) or when the steps run out.

A malformed call, an unknown tool, arguments the tool's schema rejects, or a
tool that raises: all are normal steps whose observation says what went wrong.
Tools are the user's code, so any exception from one is caught and shown.

Splits are by seed and by task (envs/splits.py): the task's key, by default its
question and answer, hashes to train, val or test and generation rejection-samples.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import gymnasium
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from envs.episode_info import episode_info, played_seed
from envs.splits import check_split, draw_for_split
from envs.textspace import action_space, fit, observation_space
from envs.tools.actions import USAGE, Answer, ToolActionError, parse_tool_action


class ToolTaskError(ValueError):
    """A tool-task definition or option that cannot work (duplicate tool names, max_steps < 1, ...)."""


@dataclass(frozen=True)
class Task:
    """One question and its reference answer."""

    question: str
    """What the agent is asked."""
    answer: str
    """The reference answer, as text; the checker compares against it."""
    tools: Sequence[BaseTool] = ()
    """Tools only this task offers (e.g. bound to its own database), besides the family's."""
    key: str = ""
    """What names the task for splits and task ids; empty means question and answer."""

    @property
    def identity(self) -> str:
        return self.key or f"{self.question}\n{self.answer}"


_NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?")


def _normalise(text: str) -> str:
    text = " ".join(text.casefold().split()).strip().rstrip(".").strip()
    return text.strip("\"'`").strip()


def _number(text: str) -> Fraction | None:
    text = text.replace("$", "").replace(" ", "")
    if not _NUMBER.fullmatch(text):
        return None
    return Fraction(text.replace(",", ""))


def answers_match(given: str, expected: str) -> bool:
    """True if two answers agree: numbers as numbers ('42.0' == '$42'), text up to case, spaces, final '.'."""
    given, expected = _normalise(given), _normalise(expected)
    number_given, number_expected = _number(given), _number(expected)
    if number_given is not None and number_expected is not None:
        return number_given == number_expected
    return given == expected


def check_exact(answer: str, task: Task) -> bool:
    """The default checker: `answers_match(answer, task.answer)`."""
    return answers_match(answer, task.answer)


@dataclass(frozen=True)
class ToolTaskSpec:
    """A family of tool tasks."""

    name: str
    """Short name used in task ids, e.g. 'arith'."""
    make_task: Callable[[random.Random], Task]
    """Draws one task from a seeded random.Random; must be deterministic given the rng."""
    tools: Sequence[BaseTool] = ()
    """LangChain tools every task of the family offers."""
    check: Callable[[str, Task], bool] = check_exact
    """Decides whether an answer is right."""
    max_steps: int = 6
    """Default step limit (tool calls plus the answer)."""
    split_by_task: bool = True
    """Keep train and test tasks disjoint by a hash of the task key (turn off only for tiny task spaces)."""


def task_id(family: str, task: Task) -> str:
    """'<family>:<16 hex digits>', a stable hash of the task's identity (questions are long)."""
    return f"{family}:{hashlib.sha256(task.identity.encode('utf-8')).hexdigest()[:16]}"


def describe_tool(tool: BaseTool) -> str:
    """'- name: description' and the tool's argument JSON schema, on two lines."""
    function = convert_to_openai_tool(tool)["function"]
    schema = json.dumps(function.get("parameters", {}), sort_keys=True)
    return f"- {function['name']}: {function.get('description', '')}\n  arguments (JSON schema): {schema}"


class ToolTaskEnv(gymnasium.Env[str, str]):
    """A tool task family as a gymnasium environment; options: split, max_steps."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, family: ToolTaskSpec, split: str = "train", max_steps: int | None = None) -> None:
        self.family = family
        self.split = check_split(split)
        self.max_steps = family.max_steps if max_steps is None else max_steps
        if self.max_steps < 1:
            raise ToolTaskError(f"max_steps must be at least 1, got {self.max_steps}")
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._task: Task | None = None
        self._tools: dict[str, BaseTool] = {}
        self._seed = 0
        self._steps = 0
        self._won = self._lost = self._over = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._seed = played_seed(self, self.split, seed)
        rng = random.Random(self._seed)
        key = (lambda task: f"{self.family.name}:{task.identity}") if self.family.split_by_task else None
        self._task = draw_for_split(self.split, lambda: self.family.make_task(rng), key)
        self._tools = {}
        for tool in [*self.family.tools, *self._task.tools]:
            if tool.name in self._tools:
                raise ToolTaskError(f"tool task {self.family.name!r} offers two tools named {tool.name!r}")
            self._tools[tool.name] = tool
        self._steps = 0
        self._won = self._lost = self._over = False
        tools = "\n".join(describe_tool(tool) for tool in self._tools.values())
        text = f"Question: {self._task.question}\nTools you can call:\n{tools}\nActions: {USAGE}"
        return self._observation(text), self._info("")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._task is None or self._over:
            raise RuntimeError(f"{self.family.name}: call reset() before step() (episode over or not begun)")
        self._steps += 1
        reward, feedback = 0.0, ""
        try:
            parsed = parse_tool_action(action)
        except ToolActionError as err:
            message = str(err)
        else:
            if isinstance(parsed, Answer):
                self._won = bool(self.family.check(parsed.text, self._task))
                self._lost = not self._won
                reward = float(self._won)
                message = f"You answered: {parsed.text}"
                feedback = (
                    "The answer is correct."
                    if self._won
                    else f"The answer is wrong; the expected answer was {self._task.answer}."
                )
            else:
                message = self._run(parsed.tool, parsed.args)
        terminated = self._won or self._lost
        truncated = not terminated and self._steps >= self.max_steps
        if truncated:
            feedback = f"You ran out of steps ({self.max_steps}) without answering."
        self._over = terminated or truncated
        text = message if not feedback else f"{message}\n{feedback}"
        return self._observation(text), reward, terminated, truncated, self._info(feedback)

    def _run(self, name: str, args: dict[str, Any]) -> str:
        tool = self._tools.get(name)
        if tool is None:
            return f"There is no tool named {name!r}. Tools: {', '.join(self._tools)}."
        try:
            output = tool.invoke(args)
        except Exception as err:  # a user's tool may raise anything; the agent sees it as feedback
            detail = " ".join(str(err).split("For further information")[0].split())[:300]
            return f"{name} failed: {type(err).__name__}: {detail}"
        return f"{name} returned: {output}"

    def _observation(self, text: str) -> str:
        if not self._over:
            text = f"{text}\nSteps left: {self.max_steps - self._steps}."
        return fit(text)

    def _info(self, feedback: str) -> dict[str, Any]:
        assert self._task is not None
        return episode_info(
            won=self._won, lost=self._lost, score=int(self._won), max_score=1,
            task_id=task_id(self.family.name, self._task), tools=list(self._tools), seed=self._seed,
            split=self.split, steps=self._steps, feedback=feedback if self._over else None,
        )  # fmt: skip
