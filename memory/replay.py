"""The one replay rule: which seeds a phase still owes, and which stored episodes count as played.

Every phase that plays a list of seeds (a round's collection, a Ray chunk, an
evaluation condition, a validation gate, an RL step's groups) can be killed
and rerun, so each plays only what the store lacks: a seed wanted k times
with n complete episodes stored under the phase's tags is owed max(0, k - n)
more. Episodes are written whole (`memory.episodes`), so a stored one is
never half-played, and a rerun neither loses nor duplicates an episode.

Which stored episodes a phase counts is its own query (its run, round,
checkpoint, policy name, condition); what counts as "played in this action
mode" is not, and lives here: a scored episode whose policy fell back to text
for a step is stored as `text-fallback` and still counts as scored play.
Episodes stored before action modes were recorded are text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

PLAYED_AS = {"text": ("text",), "scored": ("scored", "text-fallback")}
"""Action mode a phase plays -> the stored episode action modes that count as played in it."""


def played_modes(action_mode: str) -> tuple[str, ...]:
    """The stored action modes that count as played in `action_mode`; ValueError for an unknown mode."""
    if action_mode not in PLAYED_AS:
        raise ValueError(f"unknown action mode {action_mode!r}; choose one of {', '.join(PLAYED_AS)}")
    return PLAYED_AS[action_mode]


def owed_seeds(wanted: Iterable[int], stored: Iterable[int]) -> list[int]:
    """The seeds of `wanted` (in order, with multiplicity) not covered by the `stored` episodes' seeds:
    each stored episode covers one occurrence of its seed."""
    have = Counter(int(s) for s in stored)
    owed = []
    for seed in wanted:
        if have[seed] > 0:
            have[seed] -= 1
        else:
            owed.append(seed)
    return owed
