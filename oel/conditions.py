"""The loop's held-out evaluation conditions, named once for the run file, the loop, its reports and viewer.

Each round r is evaluated under up to three conditions (`oel.loop`), the
three curves of OEL's figures:

- `none`: M_r alone, the weights the round collected with;
- `knowledge`: M_r with the round's knowledge K_r in context;
- `consolidated`: M_{r+1} alone, the weights consolidation produced;

and, in a run with a `[ternary]` table (`oel.ternary_round`), a fourth:

- `ternary`: the packed sparse-ternary student distilled from M_{r+1}.

A run file's `[evaluate].conditions` picks among them (`oel.run_config`),
the loop records each one's figures under its name, and the end-of-round
table, `oel report` and `oel ui` show them in this order with these labels.
This module imports nothing, so the viewer can name the conditions without
loading a model stack.
"""

from __future__ import annotations

NONE = "none"
KNOWLEDGE = "knowledge"
CONSOLIDATED = "consolidated"
TERNARY = "ternary"

CONDITIONS = (NONE, KNOWLEDGE, CONSOLIDATED, TERNARY)
"""Every condition, in the order tables and charts show them."""
DEFAULT_CONDITIONS = (NONE, KNOWLEDGE, CONSOLIDATED)
"""What a run evaluates unless its file says; a run with a `[ternary]` table adds TERNARY."""

LABELS = {
    NONE: "no knowledge", KNOWLEDGE: "knowledge in context", CONSOLIDATED: "consolidated",
    TERNARY: "ternary student",
}  # fmt: skip
"""Each condition's name in a chart legend or a table header."""
