"""BFCL v4 multi-turn entries and their ground truth, read from the installed `bfcl-eval` package.

`bfcl-eval` is optional and installed without its dependencies (its model
handlers pull in openai, anthropic, sentence-transformers, ...), so nothing
here imports it at module level: `data_dir` finds it when an environment is
made and turns its absence into one `BFCLError` line. Only the data files and
two constant modules without imports (`constants.executable_backend_config`,
`constants.default_prompts`) are read; `bfcl_eval.utils` is avoided on purpose,
because importing it creates result folders next to the installed package.

An entry is loaded as BFCL's `load_dataset_entry` builds it for the multi-turn
categories: the functions offered are every function document of the entry's
`involved_classes` (BFCL ignores the data's `excluded_function`, and so do we);
in `multi_turn_miss_func` the functions named in `missed_function` are held out
until their turn, whose user message is empty in the data and becomes BFCL's
`DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC`. Parameter schemas are
BFCL's own dialect ("dict", "float", ...) translated to JSON schema, as its
OpenAI-style tool conversion does.

Ground-truth calls are strings such as "cd(folder='document')" or
"sort('final_report.pdf')"; `parse_call` reads them with `ast` into a name,
positional and keyword literals, and never evaluates them.
"""

from __future__ import annotations

import ast
import importlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

CATEGORIES = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
"""The multi-turn categories of BFCL v4 that ship data and ground truth in the package."""
INSTALL_HINT = "pip install --no-deps bfcl-eval==2026.3.23"
_VERSION_PREFIX = "BFCL_v4"
_TOOL_DESCRIPTION = " Tool description: "
_JSON_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


class BFCLError(ValueError):
    """A BFCL option that cannot work (unknown category, bad limit), or bfcl-eval missing or damaged."""


@dataclass(frozen=True)
class Call:
    """One function call: a name and literal arguments."""

    name: str
    args: tuple[Any, ...] = ()
    """Positional arguments (only ground-truth calls have them; actions give keywords)."""
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class Function:
    """One function an entry offers, as its BFCL function document describes it."""

    name: str
    owner: str
    """The backend class the function is a method of (e.g. GorillaFileSystem)."""
    owner_description: str
    """What the class is, the part of BFCL's description before 'Tool description:'."""
    summary: str
    """What the function does, the part after it."""
    parameters: dict[str, Any]
    """Its arguments as a JSON schema object."""

    @property
    def description(self) -> str:
        """BFCL's full description (class, then function)."""
        return f"{self.owner_description}{_TOOL_DESCRIPTION}{self.summary}"


@dataclass(frozen=True)
class Entry:
    """One multi-turn task: user turns, backend classes and their initial state, ground truth per turn."""

    id: str
    index: int
    """The scenario's number, the id's suffix: entries of all categories with one number share a scenario."""
    category: str
    turns: tuple[str, ...]
    """The user's message of each turn."""
    involved_classes: tuple[str, ...]
    initial_config: dict[str, Any]
    functions: tuple[Function, ...]
    held_out: dict[str, int]
    """Function name -> the turn from which it is offered (multi_turn_miss_func only)."""
    ground_truth: tuple[tuple[Call, ...], ...]

    @property
    def long_context(self) -> bool:
        """BFCL loads the backends with extra bulk for this category (`_load_scenario(long_context=True)`)."""
        return "long_context" in self.category

    def offered(self, turn: int) -> tuple[Function, ...]:
        """The functions the agent may call in `turn` (0-based)."""
        return tuple(f for f in self.functions if self.held_out.get(f.name, 0) <= turn)


def data_dir() -> Path:
    """The `data` folder of the installed bfcl-eval, or BFCLError in one line if it is not installed."""
    try:
        package = importlib.import_module("bfcl_eval")
    except ImportError:
        raise BFCLError(f"the BFCL environment needs the bfcl-eval package: {INSTALL_HINT}") from None
    path = Path(package.__file__).parent / "data"
    if not path.is_dir():
        raise BFCLError(f"bfcl-eval at {path.parent} has no data folder; reinstall it: {INSTALL_HINT}")
    return path


def check_category(category: str) -> str:
    """Return `category` if BFCL ships it here, else raise BFCLError naming the choices."""
    if category not in CATEGORIES:
        raise BFCLError(f"unknown BFCL category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return category


def load_entries(category: str) -> tuple[Entry, ...]:
    """Every entry of a multi-turn category, in the data's order, ground truth attached."""
    return _load(data_dir(), check_category(category))


def parse_call(text: str) -> Call:
    """Read a ground-truth call like "mv(source='a', destination='b')" with `ast`, literals only."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError("not a call of a plain function name")
        if any(k.arg is None for k in node.keywords):
            raise ValueError("** arguments")
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except (SyntaxError, ValueError) as err:
        raise BFCLError(f"cannot read the ground-truth call {text!r}: {err}") from None
    return Call(node.func.id, args, kwargs)


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """BFCL's parameter schema with its type names ("dict", "float", ...) replaced by JSON schema's."""
    out = dict(schema)
    if isinstance(out.get("type"), str):
        out["type"] = _JSON_TYPES.get(out["type"], out["type"])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {name: json_schema(sub) for name, sub in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = json_schema(out["items"])
    return out


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise BFCLError(f"cannot read {path}: {err}; reinstall bfcl-eval: {INSTALL_HINT}") from None


@cache
def _functions_of(root: Path, owner: str) -> tuple[Function, ...]:
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    functions = []
    for doc in _read_lines(root / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[owner]):
        blurb, _, summary = doc["description"].partition(_TOOL_DESCRIPTION)
        functions.append(Function(doc["name"], owner, blurb, summary, json_schema(doc["parameters"])))
    return tuple(functions)


def _entry(root: Path, category: str, raw: dict[str, Any], truth: dict[str, Any]) -> Entry:
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC

    if raw["id"] != truth["id"] or len(raw["question"]) != len(truth["ground_truth"]):
        raise BFCLError(
            f"{category}: entry {raw['id']} and its ground truth do not match; reinstall bfcl-eval"
        )
    held_out = {name: int(turn) for turn, names in raw.get("missed_function", {}).items() for name in names}
    turns = tuple(
        "\n".join(message["content"] for message in messages)
        or DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
        for messages in raw["question"]
    )
    classes = tuple(raw["involved_classes"])
    return Entry(
        id=raw["id"],
        index=int(raw["id"].rsplit("_", 1)[1]),
        category=category,
        turns=turns,
        involved_classes=classes,
        initial_config=raw.get("initial_config", {}),
        functions=tuple(f for owner in classes for f in _functions_of(root, owner)),
        held_out=held_out,
        ground_truth=tuple(tuple(parse_call(call) for call in turn) for turn in truth["ground_truth"]),
    )


@cache
def _load(root: Path, category: str) -> tuple[Entry, ...]:
    name = f"{_VERSION_PREFIX}_{category}.json"
    raws, truths = _read_lines(root / name), _read_lines(root / "possible_answer" / name)
    if len(raws) != len(truths):
        raise BFCLError(f"{name}: {len(raws)} entries but {len(truths)} ground truths; reinstall bfcl-eval")
    return tuple(_entry(root, category, raw, truth) for raw, truth in zip(raws, truths, strict=True))
