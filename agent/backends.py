"""The policy backends by name: adding a backend is one module that implements `agent.policy.Policy`
and one line in `BACKENDS`.

Each entry names the backend's class as "module:Class"; the module is imported
only when that backend is built, so `oel --help` and a loop that runs on `hf`
never import vLLM or LangChain. Every backend class takes the model as its
first argument (a local HF folder, None for the embedded SmolLM2, for
`langchain` an import spec `package.module:attribute` naming a chat model, for
`openai` the model name the server serves, for `reference` the reference
policy: solver, random or blind) and backend-specific keyword
arguments after it (`openai` takes `base_url`).

Run files and command lines check backend names against this table
(`check_backend`), so a typo fails before any model loads.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from agent.policy import Policy, PolicyError

BACKENDS: dict[str, str] = {
    "hf": "agent.hf_policy:HFPolicy",
    "vllm": "agent.vllm_policy:VLLMPolicy",
    "langchain": "agent.langchain_policy:LangChainPolicy",
    "openai": "agent.openai_policy:OpenAIPolicy",
    "reference": "agent.reference_policy:ReferencePolicy",
}
"""Backend name -> "module:Class" of its Policy implementation."""

REMOTE_BACKENDS = ("langchain", "openai", "reference")
"""Backends whose model is a name (an import spec, a served model, a reference policy), not a local folder."""


def check_backend(name: str) -> str:
    """Return `name` if it is a registered backend, else raise PolicyError listing the known ones."""
    if name not in BACKENDS:
        raise PolicyError(f"unknown policy backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def backend_class(name: str) -> type:
    """The Policy class of backend `name` (its module is imported now)."""
    module, _, attribute = BACKENDS[check_backend(name)].partition(":")
    return getattr(importlib.import_module(module), attribute)


def backend_options(backend: str, base_url: str | None) -> dict[str, Any]:
    """The backend's keyword options from a command line or a run file (`base_url` for openai)."""
    if backend == "openai":
        return {"base_url": base_url}
    return {}


def make_policy(backend: str = "hf", model: str | os.PathLike[str] | None = None, **kw: Any) -> Policy:
    """Build the policy of `backend` on `model` (see the module docstring for what `model` may be)."""
    return backend_class(backend)(model, **kw)
