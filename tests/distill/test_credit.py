"""The outcome table (step-level credit from repeated states) and the credit method.

The table is checked on hand-made episodes whose values are worked out in
the comments (gamma 0.9). The method runs end to end on scored FrozenLake
played by the tiny model.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from round_helpers import play_round

from distill import credit
from distill.consolidation import consolidate, make_job
from distill.errors import ConsolidationError
from distill.methods import credit as credit_method
from distill.methods import opcd, sft
from memory import queries
from memory.store import ExperienceStore


def _steps(episodes: list[tuple[list[tuple[str, str]], str]]) -> pd.DataFrame:
    """Rows of `memory.queries.steps` for episodes given as ([(state, action), ...], 'won'|'lost'|'out')."""
    rows = []
    for e, (moves, end) in enumerate(episodes):
        for i, (state, action) in enumerate(moves):
            rows.append({"episode_id": e + 1, "index": i, "state": state, "action": action,
                         "episode_won": end == "won", "episode_lost": end == "lost"})  # fmt: skip
    return pd.DataFrame(rows)


def test_values_back_up_through_repeated_states_and_stitch_episodes():
    table = credit.outcome_table(
        _steps([
            ([("A", "down"), ("B", "right")], "won"),  # A -down-> B -right-> win
            ([("A", "right")], "lost"),  # A -right-> hole
            ([("C", "down"), ("B", "left")], "lost"),  # C -down-> B, then a hole: still C -down-> B wins
            ([("A", "down"), ("B", "up"), ("D", "up")], "out"),  # ran out of steps
        ])
    )  # fmt: skip
    a, b, c = table["A"].actions, table["B"].actions, table["C"].actions
    assert b["right"].q == 1.0 and b["left"].lost_at_once and b["left"].q == 0.0
    assert a["down"].q == pytest.approx(0.9) and a["down"].tries == 2 and a["down"].wins == 1
    assert a["right"].lost_at_once and table["A"].best() == ["down"] and table["A"].losing() == ["right"]
    assert c["down"].q == pytest.approx(0.9) and c["down"].wins == 0  # known only by stitching
    assert b["up"].q == 0.0 and table["D"].best() == [] and table["D"].losing() == []
    items = dict(credit.outcome_items(table))
    text = next(t for t in items if "\nA\n" in t)
    assert items[text] == [1, 2, 4] and "right: lost at once" in text


def test_ties_keep_every_shortest_win():
    table = credit.outcome_table(_steps([([("S", "down")], "won"), ([("S", "right")], "won")]))
    assert sorted(table["S"].best()) == ["down", "right"]


@pytest.fixture(scope="module")
def played(tmp_path_factory, tiny_path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('credit')}/oel.db"
    return play_round(url, tiny_path, "- EXPERIENCE ITEM: x", action_mode="scored", episodes=8, group_size=4,
                      temperature=3.0)  # fmt: skip


def test_credit_trains_toward_the_best_known_actions_and_records_the_table(played, tmp_path):
    config = {"run": "r", "round": 0, "method": "credit", "action_mode": "scored", "steps": 6, "lr": 3e-3,
              "temperature": 1.0, "train_layers": 1, "out": str(tmp_path / "out"),
              "save_every": 6}  # fmt: skip
    with ExperienceStore.open(played) as store:
        job = make_job(config, store)
        job.setup()
        try:
            pool = job.method.pool
            assert pool and job.trunk is not None
            with torch.no_grad():
                before = job.method.loss(job, pool, job.method.sample(job, 1))[0]
        finally:
            job.cleanup()
        result = consolidate(config, store)
        versions = queries.knowledge_versions(store)
        outcomes = versions[versions["kind"] == "outcomes"]
        assert len(outcomes) == 1 and int(outcomes["n_items"].iloc[0]) >= len(pool)
        items = queries.knowledge_items(store, 1, version_id=int(outcomes["id"].iloc[0]))
        assert items["text"].str.contains("what each action led to").all() and (items["n_sources"] > 0).all()
    losses = [m["loss"] for m in result.metrics]
    assert result.metrics[0]["states"] == result.metrics[0]["pool"] == len(pool)
    assert losses[0] == pytest.approx(float(before), rel=1e-4) and losses[-1] < losses[0]


def _second_round(url: str, model) -> None:
    """Round 1 of run 'r': 8 more scored FrozenLake seeds, played like round 0."""
    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams
    from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts

    with ExperienceStore.open(url) as store:
        run_id = store.get_run("r")
        round_id = store.start_round(run_id, 1)
        checkpoint = store.checkpoint_for_path(str(model), run_id=run_id)
        config = RolloutConfig(
            batch=16, action_mode="scored", sampling=SamplingParams(temperature=3.0, seed=1)
        )
        seeds = [s for s in range(8, 16) for _ in range(4)]
        tags = EpisodeTags(run_id, round_id, checkpoint)
        run_rollouts(HFPolicy(model, device="cpu"), store, config, tags=tags, seeds=seeds)


@pytest.mark.parametrize("method", ["credit", "sft", "opcd"])
def test_replay_adds_the_earlier_rounds_experience(tmp_path, tiny_path, method):
    url = f"sqlite:///{tmp_path}/oel.db"
    play_round(url, tiny_path, "- EXPERIENCE ITEM: x", action_mode="scored", episodes=8, group_size=4,
               temperature=3.0)  # fmt: skip
    _second_round(url, tiny_path)
    pools = {}
    with ExperienceStore.open(url) as store:
        for replay in (0, -1):
            config = {"run": "r", "round": 1, "method": method, "action_mode": "scored", "replay": replay,
                      "out": str(tmp_path / f"out{replay}"), "require_gap": False}  # fmt: skip
            job = make_job(config, store)
            job.setup()
            pools[replay] = {getattr(s, "scored", s).state for s in job.method.pool}
            job.cleanup()
        steps = queries.steps(store, run="r")
    if method == "sft":
        steps = steps[steps["episode_won"].astype(bool)]
    by_round = {r: set(steps.loc[steps["round"] == r, "state"]) for r in (0, 1)}
    assert pools[0] <= by_round[1] and pools[-1] <= by_round[0] | by_round[1]
    assert pools[-1] & (by_round[0] - by_round[1])  # something only round 0 saw is trained on


@pytest.mark.parametrize("method", ["credit", "sft", "opcd"])
def test_a_replay_below_minus_one_is_refused_in_one_line(method):
    configs = {"credit": credit_method.ScoredConfig, "sft": sft.ScoredConfig, "opcd": opcd.ScoredConfig}
    config_cls = configs[method]
    with pytest.raises(ConsolidationError, match=r"replay must be >= -1 .*got -2"):
        config_cls(replay=-2)
    assert config_cls(replay=-1).replay == -1


def test_solver_labels_are_every_optimal_move_at_visited_and_solver_states(played, tmp_path):
    from envs.grid.solver import optimal_moves_of_text

    config = {"run": "r", "round": 0, "method": "credit", "action_mode": "scored", "labels": "solver",
              "eval_env": "oel/FrozenLake-v0", "out": str(tmp_path / "out")}  # fmt: skip
    with ExperienceStore.open(played) as store:
        job = make_job(config, store)
        job.setup()
        pool = job.method.pool
        visited = set(queries.steps(store, run="r", round=0, split="train")["state"])
        job.cleanup()
    assert pool and {p.scored.state for p in pool} - visited  # the solver's own states join
    for p in pool:
        best = optimal_moves_of_text(p.scored.state)
        assert sorted(p.scored.commands[i] for i in p.best) == sorted(f"[{m}]" for m in best) and not p.avoid
