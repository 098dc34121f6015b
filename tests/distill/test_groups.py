"""Which actions of a GRPO group get credit: the group, per-state and run-wide outcome baselines."""

from __future__ import annotations

import pandas as pd
import pytest

from distill.credit import outcome_table
from distill.errors import ConsolidationError
from distill.groups import PlayedEpisode, Turn, select, turn_advantages


def _episode(index: int, states: list[str], reward: float) -> PlayedEpisode:
    turns = [Turn(s, [1], [2], [-0.1], None) for s in states]
    return PlayedEpisode(index, 7, reward, reward > 0, turns)


def _tree() -> list[list[PlayedEpisode]]:
    """One seed, four episodes: from s0, two went to a (one won), two to b (both lost, from b they agree)."""
    return [[
        _episode(1, ["s0", "a"], 1.0),
        _episode(2, ["s0", "a"], 0.0),
        _episode(3, ["s0", "b"], 0.0),
        _episode(4, ["s0", "b", "b"], 0.0),
    ]]  # fmt: skip


def test_the_group_baseline_gives_every_action_its_episodes_advantage():
    groups = _tree()
    selection = select(groups)
    advantages = turn_advantages(groups, selection, "group")
    assert [len(a) for a in advantages] == [2, 2, 2, 3]
    for episode_adv, turns in zip(selection.advantages, advantages, strict=True):
        assert turns == [episode_adv] * len(turns)


def test_the_state_baseline_credits_only_the_decisions_where_outcomes_diverged():
    groups = _tree()
    std = 0.4330127  # population std of rewards (1, 0, 0, 0)
    advantages = turn_advantages(groups, select(groups), "state")
    # s0: every episode visits it, so its baseline is the group mean 0.25, as in GRPO
    expected = [0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std]
    assert [a[0] for a in advantages] == pytest.approx(expected, rel=1e-5)
    # a: the two visitors split, baseline 0.5; b: every visitor lost, no push at all (a repeat visit included)
    assert advantages[0][1] == pytest.approx(0.5 / std, rel=1e-5)
    assert advantages[1][1] == pytest.approx(-0.5 / std, rel=1e-5)
    assert advantages[2][1:] == [0.0] and advantages[3][1:] == [0.0, 0.0]


def test_an_equal_reward_group_has_no_state_advantage_and_an_unknown_baseline_is_refused():
    groups = [[_episode(1, ["s0"], 0.0), _episode(2, ["s0", "x"], 0.0)]]
    assert turn_advantages(groups, select(groups), "state") == [[0.0], [0.0, 0.0]]
    with pytest.raises(ConsolidationError, match="unknown baseline 'episode'"):
        turn_advantages(groups, select(groups), "episode")


def _scored(index: int, moves: list[tuple[str, str]], reward: float) -> PlayedEpisode:
    commands = ["[left]", "[right]"]
    turns = [Turn(s, [1], [2], [-0.7], {"commands": commands, "chosen": commands.index(a)}) for s, a in moves]
    return PlayedEpisode(index, 7, reward, reward > 0, turns)


def test_the_outcomes_baseline_credits_each_action_against_its_states_record_over_the_run():
    # the run's history: from S, [right] won at once and [left] fell in a hole; T was only ever left by [left]
    history = pd.DataFrame({
        "episode_id": [1, 2, 3], "index": [0, 0, 0], "state": ["S", "S", "T"],
        "action": ["[right]", "[left]", "[left]"], "reward": [1.0, 0.0, 0.0],
        "episode_won": [True, False, False], "episode_lost": [False, True, True],
    })  # fmt: skip
    table = outcome_table(history)
    # a group whose every episode lost: the group and state baselines have nothing to say about it
    group = [[_scored(4, [("S", "[left]")], 0.0), _scored(5, [("T", "[left]"), ("U", "[right]")], 0.0)]]
    assert turn_advantages(group, select(group), "state") == [[0.0], [0.0, 0.0]]
    advantages = turn_advantages(group, select(group), "outcomes", outcomes=table)
    # S: Q(left) = 0 against the mean of Q(right) = 1 and Q(left) = 0; T: one action known; U: never seen
    assert advantages == [[-0.5], [0.0, 0.0]]
    winner = [[_scored(6, [("S", "[right]")], 1.0), _scored(7, [("S", "[left]")], 0.0)]]
    assert turn_advantages(winner, select(winner), "outcomes", outcomes=table) == [[0.5], [-0.5]]
    with pytest.raises(ConsolidationError, match="outcome table"):
        turn_advantages(group, select(group), "outcomes")
