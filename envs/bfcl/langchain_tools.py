"""The functions of a BFCL entry as LangChain tools, for agents that call tools natively.

`make_tools(functions, execute)` wraps each function as a `StructuredTool`
whose name, full BFCL description and JSON-schema arguments are the entry's,
and whose body is `execute(name, arguments)`. With an environment:

    env = BFCLMultiTurnEnv(split="test")
    env.reset(seed=0)
    tools = make_tools(env.offered, env.call)   # again after each answer: miss_func adds functions

`env.call` runs the function on the episode's backends and records it in the
current turn, so the judge sees calls made through the tools exactly as calls
made through `step`. The schema is passed to LangChain as a dict, so LangChain
does not validate arguments; the backend answers a wrong one with an error result,
as BFCL does, rather than the tool raising.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.tools import StructuredTool

from envs.bfcl.data import Function


def make_tools(
    functions: Sequence[Function], execute: Callable[[str, dict[str, Any]], str]
) -> list[StructuredTool]:
    """One StructuredTool per function; invoking it returns `execute(name, arguments)`."""
    return [_tool(function, execute) for function in functions]


def _tool(function: Function, execute: Callable[[str, dict[str, Any]], str]) -> StructuredTool:
    def run(**arguments: Any) -> str:
        return execute(function.name, arguments)

    return StructuredTool.from_function(
        func=run, name=function.name, description=function.description, args_schema=function.parameters
    )
