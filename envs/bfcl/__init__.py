"""BFCL v4 multi-turn function calling (the `bfcl-eval` package's data and backends) as an environment.

Public API: `BFCLMultiTurnEnv` (the gymnasium environment), `BFCLError` (bad
options, bfcl-eval missing), `CATEGORIES`, `load_entries`, `judge` (BFCL's
multi-turn checker, reproduced without `eval`) and `make_tools` (an entry's
functions as LangChain tools). bfcl-eval is imported only when an environment
is made, so this package imports without it; the environment and the tools
are imported on first use, because `envs.checks` imports the error class for
every command and must not pay for LangChain there.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from envs.bfcl.data import CATEGORIES, BFCLError, Call, Entry, Function, load_entries
from envs.bfcl.judge import Verdict, judge  # eager: the submodule `judge` would shadow the function

_LAZY = {"BFCLMultiTurnEnv": "env", "make_tools": "langchain_tools"}

__all__ = [
    "CATEGORIES",
    "BFCLError",
    "BFCLMultiTurnEnv",
    "Call",
    "Entry",
    "Function",
    "Verdict",
    "judge",
    "load_entries",
    "make_tools",
]

if TYPE_CHECKING:
    from envs.bfcl.env import BFCLMultiTurnEnv
    from envs.bfcl.langchain_tools import make_tools


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"envs.bfcl.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
