"""The consolidation methods by name and action mode: adding a method is one module and one line in `METHODS`.

A method module defines `Config` (a dataclass of the method's own settings,
each with a default and a docstring; the command-line flags and the run
file's `[consolidate]` keys are generated from it) and `Method(job_config,
config)`, which implements `distill.job.Method`. The module reads top to
bottom as the algorithm; the job shell (`distill.job`) does the rest.

A method has a module per action mode it supports: `text` trains on reply
tokens (OEL's protocol), `scored` on candidate distributions
(`agent.forms.ScoredForm`). Modules are imported only when their method is
used, so `oel --help` does not pay for torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from distill.errors import ConsolidationError

METHODS: dict[str, dict[str, str]] = {
    "opcd": {"text": "distill.methods.opcd", "scored": "distill.methods.opcd_scored"},
    "offpolicy": {"text": "distill.methods.offpolicy"},
    "sft": {"text": "distill.methods.sft", "scored": "distill.methods.sft_scored"},
    "rl": {"text": "distill.methods.grpo", "scored": "distill.methods.grpo_scored"},
    "opcd+rl": {"text": "distill.methods.opcd_rl", "scored": "distill.methods.opcd_rl_scored"},
    "credit": {"scored": "distill.methods.credit_scored"},
}
"""Method name -> action mode -> module. Descriptions are each module's first docstring line."""


def method_module(name: str, action_mode: str = "text") -> ModuleType:
    """The module of method `name` in `action_mode`; ConsolidationError naming what exists otherwise."""
    if name not in METHODS:
        raise ConsolidationError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if action_mode not in METHODS[name]:
        raise ConsolidationError(
            f"method {name!r} has no {action_mode!r} action mode; it has {', '.join(METHODS[name])}"
        )
    return importlib.import_module(METHODS[name][action_mode])
