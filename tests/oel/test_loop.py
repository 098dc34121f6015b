"""The online loop end to end on the real SmolLM2: two rounds, their lineage, resumption, the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from memory import queries
from memory.rounds import PHASES
from memory.store import ExperienceStore
from oel.loop import OnlineLoop
from oel.report import write_report
from oel.run_config import parse_loop_config

pytestmark = pytest.mark.slow  # the real SmolLM2 plays, extracts and is consolidated


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory, smollm_path):
    """A 2-round loop on a tiny budget with the real model; yields (store, summaries, loop)."""
    tmp = tmp_path_factory.mktemp("loop")
    config = parse_loop_config(
        {
            "run": {"name": "e2e", "rounds": 2, "checkpoints": str(tmp / "ckpts")},
            "sampling": {"max_new_tokens": 12},
            "collect": {"episodes": 2, "batch": 2},
            "extract": {"max_new_tokens": 24, "batch": 2},
            # the real model's teacher gap is 0 (knowledge changes no decision at 135M): go on anyway
            "consolidate": {
                "steps": 1,
                "batch": 2,
                "max_new_tokens": 12,
                "topk": 32,
                "require_gap": False,
                "eval_episodes": 2,
            },
            "evaluate": {"episodes": 2, "batch": 2},
        }
    )
    with ExperienceStore.open(f"sqlite:///{tmp / 'oel.db'}") as store:
        loop = OnlineLoop(config, store)
        summaries = loop.run()
        yield store, summaries, loop, tmp


def test_two_rounds_complete_with_lineage(two_rounds) -> None:
    store, summaries, loop, _tmp = two_rounds
    assert [s.index for s in summaries] == [0, 1]
    assert queries.rounds(store, loop.run_id)["status"].tolist() == ["done", "done"]
    lineage = queries.lineage(store, loop.run_id)
    parents = dict(zip(lineage["id"], lineage["parent_id"], strict=True))
    for summary in summaries:
        assert set(summary.results) == set(PHASES)
    first, second = summaries
    base = first.results["collect"]["checkpoint_id"]
    m1 = first.results["consolidate"]["checkpoint_id"]
    m2 = second.results["consolidate"]["checkpoint_id"]
    assert second.results["collect"]["checkpoint_id"] == m1, "round 1 plays round 0's consolidated model"
    assert parents[m1] == base and parents[m2] == m1
    assert store.deployed_checkpoint(loop.run_id)[0] == m2
    assert Path(second.results["consolidate"]["path"]).is_dir()
    # collection plays fresh train seeds per round
    train = queries.episodes(store, run="e2e", split="train")
    assert sorted(train.loc[train["round"] == 0, "seed"]) == [0, 1]
    assert sorted(train.loc[train["round"] == 1, "seed"]) == [2, 3]
    # the three held-out conditions; M1 alone is played once and serves both rounds
    for summary in summaries:
        conditions = summary.results["evaluate"]["conditions"]
        assert set(conditions) == {"none", "knowledge", "consolidated"}
        assert all(c["episodes"] == 2 for c in conditions.values())
    assert second.condition("none") == {**first.condition("consolidated")}
    test = queries.episodes(store, run="e2e", split="test", checkpoint=m1)
    assert len(test[test["knowledge_version"].isna()]) == 2


def test_running_again_adds_nothing(two_rounds) -> None:
    store, summaries, loop, _tmp = two_rounds
    before = len(queries.episodes(store, run="e2e"))
    again = loop.run()
    assert len(queries.episodes(store, run="e2e")) == before
    assert [s.results for s in again] == [s.results for s in summaries]


def test_report_writes_markdown_and_valid_pngs(two_rounds) -> None:
    store, _summaries, _loop, tmp = two_rounds
    path = write_report(store, "e2e", tmp / "report")
    text = path.read_text()
    for name in ("pass_rate", "learning", "tokens", "knowledge", "loss"):
        png = tmp / "report" / f"{name}.png"
        assert f"({name}.png)" in text
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100
    assert "Checkpoint lineage" in text and "| 1 | done |" in text
