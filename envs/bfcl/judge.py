"""Whether an episode's function calls solve a BFCL multi-turn entry, judged as BFCL's checker judges them.

`judge(entry, calls)` follows `multi_turn_checker` of bfcl-eval
(eval_checker/multi_turn_eval/multi_turn_checker.py), rule for rule:

* the agent's calls and the ground truth's are both replayed, turn by turn,
  on fresh backends (`Backends`) loaded with the entry's initial state; each
  side keeps its instances across turns;
* a turn whose ground truth is empty (the request cannot be served yet, as in
  miss_func and miss_param) is not checked, but its calls still run, so the
  next turn's state is right;
* a turn whose ground truth is not empty fails if the agent made no call in
  it ("empty turn");
* the state check: for every class, every public attribute (name not starting
  with "_") of the ground truth's instance must equal the agent's (`==`);
* the response check: every ground-truth result of this turn must appear
  among the agent's results of this turn and all earlier ones, as a multiset
  and in any order (BFCL's `_is_subsequence_unordered`);
* the first failing turn decides; an entry passes when every turn does.

Results are compared as the strings BFCL records (`backends.result_text`).
BFCL's `multi_turn_irrelevance_checker`
is not applied, since its evaluation runner does not apply it either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envs.bfcl.backends import Backends
from envs.bfcl.data import Call, Entry


@dataclass(frozen=True)
class Verdict:
    """The judgement of one episode."""

    won: bool
    failed_turn: int | None
    """The first failing turn (0-based), None when the entry passes."""
    check: str
    """Which check failed: "empty", "state", "response" or "turns"; empty when the entry passes."""
    reason: str
    """One line saying so, fit to show the agent."""


def _state_differences(model: Backends, truth: Backends) -> list[str]:
    differences = []
    for name, expected in truth.instances.items():
        actual = model.instances[name]
        for attribute, value in vars(expected).items():
            if not attribute.startswith("_") and getattr(actual, attribute) != value:
                differences.append(f"{name}.{attribute}")
    return differences


def _missing(expected: Sequence[str], actual: Sequence[str]) -> list[int]:
    """Indices of `expected` items not matched one-to-one by items of `actual`."""
    pool = list(actual)
    missing = []
    for i, item in enumerate(expected):
        if item in pool:
            pool.remove(item)
        else:
            missing.append(i)
    return missing


def judge(entry: Entry, calls: Sequence[Sequence[Call]]) -> Verdict:
    """Judge the agent's calls, one list per turn, against the entry's ground truth."""
    turns = len(entry.ground_truth)
    if len(calls) != turns:
        return Verdict(False, len(calls), "turns", f"The episode played {len(calls)} of {turns} turns.")
    model, truth = Backends(entry), Backends(entry)
    results_so_far: list[str] = []
    for turn, (mine, expected) in enumerate(zip(calls, entry.ground_truth, strict=True)):
        results_so_far.extend(model.execute(call) for call in mine)
        expected_results = [truth.execute(call) for call in expected]
        if not expected:
            continue
        where = f"Turn {turn + 1} of {turns} fails"
        if not mine:
            return Verdict(
                False,
                turn,
                "empty",
                f"{where}: no function was called; the request needs {len(expected)} call(s).",
            )
        differences = _state_differences(model, truth)
        if differences:
            return Verdict(
                False,
                turn,
                "state",
                f"{where} BFCL's state check: {', '.join(differences)} differ from the ground truth's.",
            )
        missing = _missing(expected_results, results_so_far)
        if missing:
            shown = "; ".join(str(expected[i]) for i in missing[:3])
            return Verdict(
                False,
                turn,
                "response",
                f"{where} BFCL's response check: no call of yours returned what {shown} returns.",
            )
    return Verdict(True, None, "", f"All {turns} turns pass BFCL's state and response checks.")
