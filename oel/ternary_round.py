"""A run file's `[ternary]` table: after each round's dense update, distil it into a packed ternary student.

The mission ends in sparse-ternary students, so a loop round can carry one
(docs/architecture.md, "the loop"): the consolidate phase first runs
`[consolidate]` as always (the dense update, M_r -> M_{r+1}), then a second
consolidation job whose teacher is M_{r+1} and whose student is ternary
(BitLinear, N:M mask, saved packed). Evaluation plays both (the `ternary`
condition beside `consolidated`), and the deploy phase deploys the one
`deploy` names.

Why a table of its own rather than `[consolidate] student = "ternary"`:
that key already means "train this method's student as ternary" (on the
command line too), and the distillation is a second job with its own
method, steps and learning rate. Its keys are the same `JobConfig` and
method `Config` fields as `[consolidate]`'s, checked the same way, so a key
means what it means for `oel consolidate`; the loop sets the job's identity
(round, run, out, action mode), its teacher (M_{r+1}), its student form
(ternary) and its start, and `deploy` is the one key of the loop's own.

Defaults make it on-policy distillation from the dense model as it is:
method `opcd` with `teacher_knowledge = false` (the exact reverse KL on the
student's states in scored mode; OPCD's teacher gap is checked on val
first). The student starts from the previous round's ternary student (its
latent weights, `distill.ternary.deploy.trainable_start`) so it keeps
learning across rounds, and from M_{r+1} itself in the first round.
"""

from __future__ import annotations

from typing import Any

DEPLOYS = ("ternary", "dense")
"""Which consolidated model the deploy phase deploys: the packed ternary student, or the dense model."""
SET_BY_LOOP = ("round", "run", "model", "teacher", "student", "knowledge", "out", "action_mode")
"""Fields of the distillation job the loop fills in itself."""
DEFAULTS = {"method": "opcd", "teacher_knowledge": False}
"""Distillation from the dense model as it is, unless the table says otherwise."""


class TernaryRoundError(ValueError):
    """A `[ternary]` table that cannot be used; the message names the key."""


def parse_table(table: Any) -> tuple[dict[str, Any], str]:
    """(the distillation job's own keys, deploy) of a `[ternary]` table; TernaryRoundError on a bad key."""
    if not isinstance(table, dict):
        raise TernaryRoundError(f"must be a table, got {type(table).__name__}")
    for key in SET_BY_LOOP:
        if key in table:
            raise TernaryRoundError(
                f"unknown key {key!r}; the loop sets {key!r} itself (the teacher is the round's dense model, "
                "the student is ternary and starts from the previous round's)"
            )
    job = {k: v for k, v in table.items() if k != "deploy"}
    deploy = table.get("deploy", DEPLOYS[0])
    if deploy not in DEPLOYS:
        raise TernaryRoundError(f"deploy must be one of {', '.join(DEPLOYS)}, got {deploy!r}")
    return {**DEFAULTS, **job}, deploy


def job_values(
    table: dict[str, Any], *, run: str, round_index: int, action_mode: str, teacher: str, start: str, out: str
) -> dict[str, Any]:
    """Flat settings of the round's distillation job (`distill.consolidation.build` checks them)."""
    return {
        **table, "run": run, "round": round_index, "action_mode": action_mode, "teacher": teacher,
        "model": start, "student": "ternary", "out": out,
    }  # fmt: skip
