"""Tool tasks: answers found through the real tools win, wrong ones do not, bad calls get feedback."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import gymnasium
import pytest
from langchain_core.tools import tool

import envs  # noqa: F401  (registers the ids)
from envs.splits import split_of_seed
from envs.tools import (
    CalculatorError,
    Task,
    ToolTaskError,
    answers_match,
    calculate,
    register_tool_task,
)


def question_of(obs: str) -> str:
    return re.search(r"Question: (.*)", obs).group(1)


def call(env, tool_name: str, **args) -> str:
    obs, reward, terminated, truncated, info = env.step(f"call {tool_name} {json.dumps(args)}")
    assert reward == 0.0 and not terminated
    prefix = f"{tool_name} returned: "
    assert obs.startswith(prefix), obs
    return obs[len(prefix) :].split("\nSteps left")[0]


def solve_arith(env, obs: str) -> str:
    question = question_of(obs)
    expression = re.sub(r"^(What is|Compute|Calculate the value of) ", "", question).rstrip("?.")
    return call(env, "calculator", expression=expression)


def solve_lookup(env, obs: str) -> str:
    question = question_of(obs)
    if m := re.fullmatch(r"What is the phone extension of (.+)\?", question):
        return re.search(r"extension: (\d+)", call(env, "find_employee", name=m.group(1))).group(1)
    if m := re.fullmatch(r"In which department does (.+) work\?", question):
        return re.search(r"department: ([^;]+)", call(env, "find_employee", name=m.group(1))).group(1)
    if m := re.fullmatch(r"How many employees work in the (.+) department\?", question):
        return str(len(call(env, "list_department", department=m.group(1)).split(", ")))
    m = re.fullmatch(r"How much do (\d+) units of the (.+) cost in total, in dollars\?", question)
    price = re.search(r"\$([\d.]+) per unit", call(env, "product_price", product=m.group(2))).group(1)
    return f"{float(Fraction(price) * int(m.group(1))):.2f}"


@pytest.mark.parametrize(
    "env_id, solve", [("oel/ToolArith-v0", solve_arith), ("oel/ToolLookup-v0", solve_lookup)]
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_answer_found_through_the_tools_is_rewarded(env_id, solve, split):
    env = gymnasium.make(env_id, split=split)
    for seed in range(25):
        obs, info = env.reset(seed=seed)
        assert "arguments (JSON schema)" in obs and info["tools"]
        answer = solve(env, obs)
        obs, reward, terminated, truncated, info = env.step(f"answer {answer}")
        assert reward == 1.0 and terminated and not truncated, obs
        assert info["won"] and not info["lost"] and info["feedback"] == "The answer is correct."


def test_lookup_asks_every_kind_of_question():
    env = gymnasium.make("oel/ToolLookup-v0")
    starts = {question_of(env.reset(seed=s)[0]).split()[0] for s in range(40)}
    assert starts == {"What", "In", "How"}


def test_wrong_answer_is_not_rewarded_and_says_what_was_expected():
    env = gymnasium.make("oel/ToolArith-v0")
    obs, _ = env.reset(seed=4)
    right = solve_arith(env, obs)
    obs, reward, terminated, truncated, info = env.step(f"answer {int(right) + 1}")
    assert reward == 0.0 and terminated and info["lost"] and not info["won"]
    assert right in info["feedback"]


@pytest.mark.parametrize(
    "action, expect",
    [
        ('call calculator {"expression": "1+', "not valid JSON"),
        ("call calculator [1, 2]", "Name exactly one tool"),
        ('call abacus {"expression": "1"}', "no tool named 'abacus'"),
        ('call calculator {"expr": "1"}', "calculator failed"),
        ('call calculator {"expression": "__import__(\'os\')"}', "unsupported syntax"),
        ('{"args": {}}', "names no tool"),
        ("answer", "answer is empty"),
        ("what is this", "not an action"),
    ],
)
def test_malformed_actions_are_normal_steps_with_feedback(action, expect):
    env = gymnasium.make("oel/ToolArith-v0", max_steps=3)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert expect in obs
    assert reward == 0.0 and not terminated and not truncated and "feedback" not in info
    assert "Steps left: 2." in obs


def test_json_call_spelling_and_running_out_of_steps():
    env = gymnasium.make("oel/ToolArith-v0", max_steps=2)
    env.reset(seed=0)
    obs, *_ = env.step('{"tool": "calculator", "args": {"expression": "6 * 7"}}')
    assert obs.startswith(f"calculator returned: {6 * 7}")
    obs, reward, terminated, truncated, info = env.step(
        '{"name": "calculator", "arguments": "{\\"expression\\": \\"1\\"}"}'
    )
    assert truncated and not terminated and reward == 0.0
    assert "ran out of steps" in info["feedback"] and not info["won"]


@pytest.mark.parametrize(
    "expression, value",
    [
        ("2 + 3 * 4", 2 + 3 * 4),
        ("(17 - 5) / 4", (17 - 5) // 4),
        ("-2 ** 10", -(2**10)),
        ("7 // 2 + 7 % 2", 7 // 2 + 7 % 2),
    ],
)
def test_calculator_agrees_with_python(expression, value):
    assert calculate(expression) == str(value)


def test_calculator_is_exact_and_refuses_code():
    assert calculate("0.1 + 0.2") == "0.3" and calculate("7 / 2") == "3.5"
    for bad in (
        "__import__('os').system('true')",
        "x + 1",
        "(1).real",
        "[1, 2]",
        "9 ** 9 ** 9",
        "1 / 0",
        "1 +",
    ):
        with pytest.raises(CalculatorError):
            calculate(bad)


@pytest.mark.parametrize(
    "given, expected, same",
    [
        ("42.0", "42", True),
        ("$1,234.50", "1234.5", True),
        ("  Sales. ", "sales", True),
        ("'Ada  Novak'", "ada novak", True),
        ("41", "42", False),
        ("Sales dept", "Sales", False),
    ],
)
def test_answers_match(given, expected, same):
    assert answers_match(given, expected) is same


@pytest.mark.parametrize("env_id", ["oel/ToolArith-v0", "oel/ToolLookup-v0"])
def test_splits_never_share_a_seed_or_a_task_and_reset_is_deterministic(env_id):
    train, val, test = (gymnasium.make(env_id, split=split) for split in ("train", "val", "test"))
    train_tasks = {train.reset(seed=s)[1]["task_id"] for s in range(200)}
    val_infos = [val.reset(seed=s)[1] for s in range(64)]
    test_infos = [test.reset(seed=s)[1] for s in range(128)]
    assert {split_of_seed(info["seed"]) for info in test_infos} == {"test"}
    assert {split_of_seed(info["seed"]) for info in val_infos} == {"val"}
    val_tasks, test_tasks = {i["task_id"] for i in val_infos}, {i["task_id"] for i in test_infos}
    assert not train_tasks & test_tasks and not train_tasks & val_tasks and not val_tasks & test_tasks
    assert len(train_tasks) > 150
    again = gymnasium.make(env_id)
    assert train.reset(seed=9) == again.reset(seed=9)
    assert train.step('call calculator {"expression": "2"}') == again.step(
        'call calculator {"expression": "2"}'
    )


def test_a_user_registers_a_tool_task_in_a_few_lines():
    @tool
    def shout(word: str) -> str:
        """Return the word in capitals."""
        return word.upper()

    @tool
    def explode(word: str) -> str:
        """Always fails."""
        raise RuntimeError(f"boom on {word}")

    def make_task(rng):
        word = rng.choice(["apple", "river", "stone", "cloud"]) + str(rng.randint(0, 999))
        return Task(f"What is {word} in capitals?", word.upper())

    register_tool_task(
        "test/Shout-v0",
        tools=[shout, explode],
        make_task=make_task,
        check=lambda answer, task: answer.strip() == task.answer,
        max_steps=4,
    )
    env = gymnasium.make("test/Shout-v0", split="test")
    obs, info = env.reset(seed=1)
    assert "- shout: Return the word in capitals." in obs and info["tools"] == ["shout", "explode"]
    word = re.search(r"What is (\S+) in capitals", obs).group(1)
    obs, *_ = env.step('call explode {"word": "x"}')
    assert "explode failed: RuntimeError: boom on x" in obs
    shouted = call(env, "shout", word=word)
    obs, reward, terminated, _, info = env.step(f"answer {shouted}")
    assert reward == 1.0 and info["won"]
    env.reset(seed=2)
    _, reward, *_ = env.step(f"answer {shouted.lower()}")  # the custom checker is case-sensitive
    assert reward == 0.0

    with pytest.raises(ToolTaskError, match="already registered"):
        register_tool_task("test/Shout-v0", tools=[shout], make_task=make_task)
    with pytest.raises(ToolTaskError, match="not a LangChain tool"):
        register_tool_task("test/Bad-v0", tools=[len], make_task=make_task)


def test_duplicate_tool_names_and_bad_options_raise():
    def make_task(rng):
        return Task("q", "a", tools=[shout_again])

    @tool
    def shout_again(word: str) -> str:
        """Capitals."""
        return word.upper()

    register_tool_task("test/Dup-v0", tools=[shout_again], make_task=make_task, split_by_task=False)
    with pytest.raises(ToolTaskError, match="two tools named 'shout_again'"):
        gymnasium.make("test/Dup-v0").reset(seed=0)
    with pytest.raises(ToolTaskError, match="max_steps"):
        gymnasium.make("oel/ToolArith-v0", max_steps=0)
