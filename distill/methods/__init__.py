"""The consolidation methods by name and action mode: adding a method is one module and one line in `METHODS`.

A method is one module holding its algorithm in every action mode it
supports, side by side: `text` trains on reply tokens (OEL's protocol),
`scored` on candidate distributions (`agent.forms.ScoredForm`). Each mode is
a class, `TextMethod` or `ScoredMethod`, implementing `distill.job.Method`,
whose `Config` attribute is a dataclass of the method's own settings, each
with a default and a docstring (the command-line flags and the run file's
`[consolidate]` keys are generated from it). The module reads top to bottom
as the algorithm; the job shell (`distill.job`) does the rest. No method
imports another method's module: what two methods share lives in a helper
they name (`distill.policy_gradient`, `distill.teacher_kl`, `distill.data`).

Modules are imported only when their method is used, so `oel --help` does
not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from distill.errors import ConsolidationError

METHODS: dict[str, dict[str, str]] = {
    "opcd": {"text": "distill.methods.opcd", "scored": "distill.methods.opcd"},
    "offpolicy": {"text": "distill.methods.offpolicy"},
    "sft": {"text": "distill.methods.sft", "scored": "distill.methods.sft"},
    "rl": {"text": "distill.methods.grpo", "scored": "distill.methods.grpo"},
    "opcd+rl": {"text": "distill.methods.opcd_rl", "scored": "distill.methods.opcd_rl"},
    "credit": {"scored": "distill.methods.credit"},
}
"""Method name -> action mode -> the module holding it (its class is `TextMethod` or `ScoredMethod`)."""

CLASS_OF_MODE = {"text": "TextMethod", "scored": "ScoredMethod"}


def method_class(name: str, action_mode: str = "text") -> Any:
    """The class of method `name` in `action_mode` (its settings are its `Config`); ConsolidationError
    naming what exists otherwise."""
    if name not in METHODS:
        raise ConsolidationError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if action_mode not in METHODS[name]:
        raise ConsolidationError(
            f"method {name!r} has no {action_mode!r} action mode; it has {', '.join(METHODS[name])}"
        )
    return getattr(importlib.import_module(METHODS[name][action_mode]), CLASS_OF_MODE[action_mode])
