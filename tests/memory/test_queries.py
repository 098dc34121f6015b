"""The read API against expectations computed independently from the written data."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from store_helpers import insert_running_episode, make_steps

from memory import queries
from memory.store import ExperienceStore, StoreError


@pytest.fixture
def filled(store: ExperienceStore) -> tuple[ExperienceStore, list[dict]]:
    """Two runs' worth of episodes over rounds, envs and splits, plus the plain-Python record of them."""
    rng = random.Random(0)
    run = store.create_run("exp")
    rounds = {i: store.start_round(run, i) for i in range(3)}
    written = []
    batch = []
    for k in range(60):
        meta = {
            "round": rng.randrange(3),
            "env": rng.choice(["oel/A-v0", "oel/B-v0"]),
            "split": rng.choice(["train", "test"]),
            "won": rng.random() < 0.4,
            "return": round(rng.uniform(-1, 1), 3),
            "n": rng.randrange(1, 6),
        }
        header = {
            "env_id": meta["env"], "task_id": f"t{k}", "seed": k, "split": meta["split"],
            "run_id": run, "round_id": rounds[meta["round"]],
        }  # fmt: skip
        result = {"total_return": meta["return"], "won": meta["won"], "lost": not meta["won"], "feedback": ""}
        batch.append((header, make_steps(meta["n"], tag=k), result))
        written.append(meta)
    store.write_episodes(batch)
    # one crashed episode in round 0 that must not count
    insert_running_episode(store, make_steps(2), env_id="oel/A-v0", seed=99, run_id=run, round_id=rounds[0])
    return store, written


def test_success_rate_by_round_matches_plain_python(filled) -> None:
    store, written = filled
    groups = defaultdict(list)
    for meta in written:
        groups[meta["round"]].append(meta)
    df = queries.success_rate(store, by=("round",)).set_index("round")
    assert sorted(df.index) == sorted(groups)
    for key, metas in groups.items():
        row = df.loc[key]
        assert row["episodes"] == len(metas)
        assert row["success_rate"] == pytest.approx(sum(m["won"] for m in metas) / len(metas))
        assert row["mean_return"] == pytest.approx(sum(m["return"] for m in metas) / len(metas))
        assert row["steps_per_episode"] == pytest.approx(sum(m["n"] for m in metas) / len(metas))
        assert row["tokens_per_episode"] == pytest.approx(3 * sum(m["n"] for m in metas) / len(metas))


def test_success_rate_by_env_and_split_with_filter(filled) -> None:
    store, written = filled
    df = queries.success_rate(store, by=("env", "split"), round=1)
    expected = defaultdict(list)
    for meta in written:
        if meta["round"] == 1:
            expected[(meta["env"], meta["split"])].append(meta["won"])
    got = {(r.env, r.split): (r.episodes, r.success_rate) for r in df.itertuples()}
    assert got == {k: (len(v), pytest.approx(sum(v) / len(v))) for k, v in expected.items()}


def test_incomplete_episodes_are_counted_only_on_request(filled) -> None:
    store, written = filled
    n_round0 = sum(m["round"] == 0 for m in written)
    assert queries.success_rate(store).set_index("round").loc[0, "episodes"] == n_round0
    with_crashed = queries.success_rate(store, include_incomplete=True).set_index("round")
    assert with_crashed.loc[0, "episodes"] == n_round0 + 1
    assert len(queries.episodes(store, include_incomplete=True)) == len(written) + 1
    assert "crash" not in set(queries.episodes(store)["task_id"])


def test_group_and_filter_names_are_checked(filled) -> None:
    store, _ = filled
    with pytest.raises(StoreError, match="cannot group by \\['colour'\\]"):
        queries.success_rate(store, by=("colour",))
    with pytest.raises(StoreError, match="unknown filter"):
        queries.success_rate(store, colour="red")


def test_episode_filters(filled) -> None:
    store, written = filled
    df = queries.episodes(store, env="oel/B-v0", split="test", won=True)
    expected = [
        k for k, m in enumerate(written) if m["env"] == "oel/B-v0" and m["split"] == "test" and m["won"]
    ]
    assert df["seed"].tolist() == expected
    assert len(queries.episodes(store, limit=5)) == 5
    assert set(queries.episodes(store, round=2)["round"]) == {2}
    assert len(queries.episodes(store, run="exp")) == len(written)
    assert queries.episodes(store, run="other").empty


def test_steps_for_consolidation_carry_decoded_tokens_and_outcome(filled) -> None:
    store, written = filled
    df = queries.steps(store, round=2, split="train")
    expected = {k: m for k, m in enumerate(written) if m["round"] == 2 and m["split"] == "train"}
    assert len(df) == sum(m["n"] for m in expected.values())
    for row in df.itertuples():
        seed = int(row.state.split()[1].split("/")[0])  # make_steps encodes tag/index in the state
        assert seed in expected
        assert row.completion_ids == [seed, row.index, row.index + 1]
        assert row.logprobs == [-0.5, -0.25, -0.125]
        assert bool(row.episode_won) == expected[seed]["won"]
        assert row.episode_return == pytest.approx(expected[seed]["return"])


def test_transcript_of_unknown_episode_is_a_clear_error(store: ExperienceStore) -> None:
    with pytest.raises(StoreError, match="no episode with id 12345"):
        queries.transcript(store, 12345)


def test_knowledge_growth_per_round(store: ExperienceStore) -> None:
    run = store.create_run("exp")
    rounds = [store.start_round(run, i) for i in range(3)]
    episode = store.write_episode(
        {"env_id": "e", "task_id": "t", "seed": 0, "split": "train"}, make_steps(1),
        {"total_return": 0.0, "won": False, "lost": True, "feedback": ""},
    )  # fmt: skip
    added = {0: 2, 1: 0, 2: 3}
    items = []
    for index, n in added.items():
        for j in range(n):
            items.append(
                store.add_knowledge_item(
                    run_id=run, round_id=rounds[index], text=f"i{index}.{j}", source_episode_ids=[episode]
                )
            )
        if n:
            store.add_knowledge_version(
                run_id=run, round_id=rounds[index], text="old", item_ids=items[:1], n_tokens=1
            )
            store.add_knowledge_version(
                run_id=run, round_id=rounds[index], text="k", item_ids=items, n_tokens=10 * len(items)
            )
    df = queries.knowledge_growth(store, run_id=run)
    assert df["round"].tolist() == [0, 1, 2]
    assert df["items_added"].tolist() == [2, 0, 3]
    assert df["items_total"].tolist() == [2, 2, 5]
    assert (
        df["version_items"].tolist()[0] == 2 and df["version_tokens"].tolist()[2] == 50
    )  # last version wins
    assert df["version_id"].isna().tolist() == [False, True, False]


def test_table_export_decodes_and_rejects_unknown(filled) -> None:
    store, written = filled
    steps = queries.table(store, "steps", limit=3)
    assert all(isinstance(v, list) for v in steps["prompt_ids"])
    with pytest.raises(StoreError, match="no table 'nope'"):
        queries.table(store, "nope")
