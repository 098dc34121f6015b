"""Step-level credit from repeated states: what each action led to, over the run's whole experience.

Grid states repeat across episodes and rounds (the same map, the same cell,
the same steps left), so the store already says, for many (state, action)
pairs, what followed. From the logged steps alone, with no access to the
game, this module builds the run's *outcome table*: for every state seen and
every action tried there, how often, in which episodes, whether it lost at
once, the state it led to, and its best known return,

    Q(s, a) = 1                              if a won the game
            = 0                              if a lost it, or the episode ran out after a
            = gamma * max_a' Q(s', a')       otherwise, over the actions a' tried in s'

backed up through the observed transitions (an action never tried in s'
counts as unknown, not as 0). Q(s, a) > 0 means a known line of play from s
through a wins, in about log(Q)/log(gamma) + 1 moves; several actions may
share the best Q. This is what GiGPO calls anchor states and what a tabular
Monte Carlo learner keeps, with the max over continuations that a
*deterministic* game allows: the same state text and action always lead to
the same next state (the grid games are; a stochastic game would make the max
optimistic). Because a transition never goes stale in a deterministic game,
replaying every round's steps is safe: old steps describe the game, not the
policy that took them, and only how often states were visited depends on the
policy (which the table ignores: each distinct state is one row).

The table is experiential knowledge in OEL's sense, drawn from trajectories,
so `outcome_items` renders it as knowledge items with their source episodes
(the store keeps them as a version of kind `outcomes`, never put in a prompt).
What a method makes of it (imitate the best known actions, push away from
known losses, or use Q as an advantage) is the method's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

GAMMA = 0.9
"""Discount per move: a shorter known win is worth more than a longer one."""


@dataclass
class ActionOutcome:
    """What one action did from one state, over every time it was tried."""

    tries: int = 0
    wins: int = 0
    """Tries after which the episode was won (Monte Carlo, for reading; Q is what trains)."""
    lost_at_once: bool = False
    """The action itself lost the game (a hole); in a deterministic game it always will."""
    won_at_once: bool = False
    next_state: str | None = None
    """The state it led to, when the game went on."""
    q: float = 0.0
    """Best known return (see the module docstring)."""
    episodes: list[int] = field(default_factory=list)
    """Episodes in which it was tried: the provenance."""


@dataclass
class StateOutcomes:
    """Every action tried from one state."""

    actions: dict[str, ActionOutcome] = field(default_factory=dict)

    @property
    def value(self) -> float:
        """max_a Q(s, a) over the tried actions."""
        return max((o.q for o in self.actions.values()), default=0.0)

    def best(self) -> list[str]:
        """The actions with the best known return, when it is positive (a known win); else []."""
        top = self.value
        return [a for a, o in self.actions.items() if o.q == top] if top > 0 else []

    def losing(self) -> list[str]:
        """The actions known to lose at once."""
        return [a for a, o in self.actions.items() if o.lost_at_once]


def outcome_table(steps: pd.DataFrame, gamma: float = GAMMA) -> dict[str, StateOutcomes]:
    """The outcome table of logged steps (`memory.queries.steps` rows: episode_id, index, state, action,
    reward, episode_won, episode_lost), values backed up to a fixed point."""
    table: dict[str, StateOutcomes] = {}
    ordered = steps.sort_values(["episode_id", "index"])
    for _episode, rows in ordered.groupby("episode_id", sort=False):
        states, actions = list(rows["state"]), list(rows["action"])
        won, lost = bool(rows["episode_won"].iloc[0]), bool(rows["episode_lost"].iloc[0])
        episode = int(rows["episode_id"].iloc[0])
        for i, (state, action) in enumerate(zip(states, actions, strict=True)):
            last = i == len(states) - 1
            outcome = table.setdefault(state, StateOutcomes()).actions.setdefault(action, ActionOutcome())
            outcome.tries += 1
            outcome.wins += won
            outcome.episodes.append(episode)
            if last:
                outcome.won_at_once |= won
                outcome.lost_at_once |= lost
            elif outcome.next_state is None:
                outcome.next_state = states[i + 1]
    _back_up(table, gamma)
    return table


def _back_up(table: dict[str, StateOutcomes], gamma: float) -> None:
    """Q(s, a) from the observed transitions, relaxed until nothing changes (the graph is acyclic when
    states show the steps left, so this ends within the longest episode's length)."""
    changed = True
    while changed:
        changed = False
        for outcomes in table.values():
            for outcome in outcomes.actions.values():
                if outcome.won_at_once:
                    q = 1.0
                elif outcome.next_state is not None and outcome.next_state in table:
                    q = gamma * table[outcome.next_state].value
                else:
                    q = 0.0
                if q > outcome.q:
                    outcome.q, changed = q, True


def outcome_items(table: dict[str, StateOutcomes]) -> Iterable[tuple[str, list[int]]]:
    """The table as knowledge items: (text, source episode ids) per state, in first-seen order."""
    for state, outcomes in table.items():
        parts = []
        for action, o in sorted(outcomes.actions.items(), key=lambda item: -item[1].q):
            result = "lost at once" if o.lost_at_once else "won at once" if o.won_at_once else f"Q {o.q:.3f}"
            parts.append(f"{action}: {result} ({o.tries} tries, {o.wins} won)")
        sources = sorted({e for o in outcomes.actions.values() for e in o.episodes})
        yield f"In the situation:\n{state}\nwhat each action led to: " + "; ".join(parts), sources
