"""The Python backends of one BFCL entry: its classes in the entry's initial state, and calls on them.

BFCL's executor (`multi_turn_utils.execute_multi_turn_func_call`) builds a
Python string per call and `eval`s it. We never evaluate text: `execute`
checks that the name is one of the entry's functions, then calls
`getattr(instance, name)(*args, **kwargs)` on the instance of the class that
owns it. Like BFCL's executor, it runs any function of the entry's classes,
also one that miss_func holds out of the listing for now (one entry's ground
truth calls such a function before its turn). Everything else follows BFCL, because the judge compares these
results with the ground truth's:

* each class is imported from BFCL's `CLASS_FILE_PATH_MAPPING`, instantiated,
  and (unless it is one of BFCL's `STATELESS_CLASSES`) loaded with
  `_load_scenario(deepcopy(initial_config[class]), long_context=...)`;
* arguments are fresh copies for every run, as BFCL's evaluated literals are
  (backends keep and later mutate argument lists, e.g. TwitterAPI's mentions);
* a result is kept as a string as BFCL keeps it: a str as is, a dict as JSON
  (or `str` when it does not serialise), anything else through `str`; an
  exception becomes "Error during execution: <message>".

Two guards that BFCL lacks keep a process alive against arguments no task
needs: MathAPI's `precision` (it sets mpmath's and decimal's precision; a
million digits runs for minutes) is capped at MAX_PRECISION, and an integer
`power` whose result would exceed MAX_POWER_BITS is refused. Both answer with
an error result, as a bad argument does. The precision MathAPI sets is
process-wide in BFCL; here each call runs in a decimal local context and
mpmath's precision is restored after it, so one episode cannot change another
process component's arithmetic.
"""

from __future__ import annotations

import copy
import decimal
import importlib
import json
import sys
from collections.abc import Iterable
from functools import cache
from typing import Any

from envs.bfcl.data import INSTALL_HINT, BFCLError, Call, Entry

ERROR_PREFIX = "Error during execution: "
MAX_PRECISION = 1000
MAX_POWER_BITS = 1 << 16


@cache
def backend_class(name: str) -> type:
    """The BFCL backend class `name`, or BFCLError in one line if it cannot be imported."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    if name not in CLASS_FILE_PATH_MAPPING:
        raise BFCLError(f"bfcl-eval has no backend class {name!r}; reinstall it: {INSTALL_HINT}")
    try:
        return getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[name]), name)
    except ImportError as err:
        raise BFCLError(
            f"bfcl-eval's {name} backend cannot be imported ({err}); install what it names"
        ) from None


def check_backends(classes: Iterable[str]) -> None:
    """Import every class in `classes` now, so that a missing dependency is one line at make time."""
    for name in classes:
        backend_class(name)


def result_text(value: Any) -> str:
    """A call's return value as BFCL records it: str as is, dict as JSON when it can be, else str()."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _refusal(call: Call) -> str | None:
    """Why a call is refused before it runs (arguments that would stall the process), or None.

    Only keyword arguments are looked at: actions have no others, and the
    ground truth's few positional ones are small literals.
    """
    precision = call.kwargs.get("precision")
    if isinstance(precision, int | float) and not isinstance(precision, bool) and precision > MAX_PRECISION:
        return f"precision {precision} is above this environment's limit of {MAX_PRECISION} digits"
    base, exponent = call.kwargs.get("base"), call.kwargs.get("exponent")
    integers = isinstance(base, int) and isinstance(exponent, int)
    if call.name == "power" and integers and abs(base) > 1 and exponent * base.bit_length() > MAX_POWER_BITS:
        return f"the result would have more than {MAX_POWER_BITS} bits"
    return None


class Backends:
    """The instances of one entry's classes, in the entry's initial state; `execute` runs one call."""

    def __init__(self, entry: Entry) -> None:
        from bfcl_eval.constants.executable_backend_config import STATELESS_CLASSES

        self.instances: dict[str, Any] = {}
        for name in entry.involved_classes:
            instance = backend_class(name)()
            if name not in STATELESS_CLASSES:
                config = copy.deepcopy(entry.initial_config.get(name, {}))
                instance._load_scenario(config, long_context=entry.long_context)
            self.instances[name] = instance
        self._owners = {f.name: f.owner for f in entry.functions}

    def execute(self, call: Call) -> str:
        """Run `call` if it names one of the entry's functions; return its result as BFCL records it.

        Never raises for a bad call: an unknown name, wrong arguments or an error
        inside the backend all come back as "Error during execution: ...".
        """
        if call.name not in self._owners:
            known = ", ".join(sorted(self._owners))
            return f"{ERROR_PREFIX}there is no function named {call.name!r}; functions: {known}"
        refusal = _refusal(call)
        if refusal:
            return f"{ERROR_PREFIX}{call.name}: {refusal}"
        method = getattr(self.instances[self._owners[call.name]], call.name)
        mpmath = sys.modules.get("mpmath")  # loaded by MathAPI; its precision is process-wide
        saved_dps = mpmath.mp.dps if mpmath is not None else None
        try:
            with decimal.localcontext():
                return result_text(method(*copy.deepcopy(call.args), **copy.deepcopy(call.kwargs)))
        except Exception as err:  # the backend is third-party code fed the agent's arguments
            return f"{ERROR_PREFIX}{err}"
        finally:
            if mpmath is not None:
                mpmath.mp.dps = saved_dps
