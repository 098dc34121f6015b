"""`oel eval` and `oel knowledge ...`: held-out play tagged with the knowledge version, and CLI smoke tests.

A tiny random Llama stands in for the policy: these tests check wiring
(versions on episodes, splits, tables, error lines), not pass rates.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.evaluate import EvalConfig, evaluate
from agent.policy import SamplingParams
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from distill.cli import app
from memory import queries
from memory.store import ExperienceStore

FAST = SamplingParams(max_new_tokens=4)


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'oel.db'}"


@pytest.fixture(scope="module")
def tiny_policy(tiny_path):
    from agent.hf_policy import HFPolicy

    return HFPolicy(tiny_path, device="cpu")


@pytest.mark.slow
def test_episodes_record_the_version_they_saw_on_the_test_split(db, tiny_policy) -> None:
    with ExperienceStore.open(db) as store:
        run_id = store.create_run("eval")
        run_rollouts(tiny_policy, store, RolloutConfig(episodes=2, batch=2, sampling=FAST),
                     tags=EpisodeTags(run_id=run_id))  # fmt: skip
        extracted = store.add_knowledge_version(
            run_id=run_id,
            round_id=None,
            text="- EXPERIENCE ITEM: holes end the game",
            item_ids=[],
            n_tokens=8,
        )
        config = EvalConfig(episodes=3, batch=2, sampling=FAST, token_cap=600)
        results = {
            spec: evaluate(tiny_policy, store, config, run_id=run_id, knowledge=spec)
            for spec in ("none", "latest", "raw")
        }
        assert results["none"].knowledge_version_id is None and results["none"].knowledge_tokens == 0
        assert results["latest"].knowledge_version_id == extracted
        raw = results["raw"].knowledge_version_id
        versions = queries.knowledge_versions(store, run_id).set_index("id")
        assert versions.loc[raw, "kind"] == "raw"
        for spec, result in results.items():
            played = queries.episodes(store, run=run_id, split="test")
            mine = played[played["id"].isin([e.episode_id for e in result.summary.episodes])]
            assert sorted(mine["seed"]) == [0, 1, 2], spec
            assert mine["knowledge_version"].isna().all() if spec == "none" else (
                mine["knowledge_version"] == result.knowledge_version_id
            ).all(), spec  # fmt: skip
            assert result.prompt_tokens_per_episode == pytest.approx(mine["n_prompt_tokens"].mean())
        # the extracted knowledge is still what deploys, not the raw baseline stored after it
        assert store.latest_knowledge_version(run_id)[0] == extracted
        # knowledge in context costs prompt tokens
        assert results["raw"].prompt_tokens_per_episode > results["none"].prompt_tokens_per_episode


@pytest.mark.slow
def test_cli_extract_show_diff_and_eval(db, tiny_path) -> None:
    runner = CliRunner()
    common = ["--db", db, "--run", "cli"]
    tiny = ["--model", str(tiny_path)]

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    ok("play", "--episodes", "2", "--batch", "2", "--max-new-tokens", "4", *common, *tiny)
    out = ok("knowledge", "extract", "--episodes", "2", "--max-new-tokens", "4", *common, *tiny)
    assert "replies" in out and "version 1:" in out
    ok("knowledge", "extract", "--episodes", "1", "--max-new-tokens", "4", *common, *tiny)
    assert "extracted" in ok("knowledge", "show", *common)
    assert "version 1" in ok("knowledge", "show", "--version", "1", "--db", db)
    assert "0 added, 0 dropped" in ok("knowledge", "diff", "1", "2", "--db", db)
    out = ok(
        "eval",
        "--episodes",
        "2",
        "--batch",
        "2",
        "--max-new-tokens",
        "4",
        "--knowledge",
        "raw",
        "--token-cap",
        "600",
        *common,
        *tiny,
    )
    assert "pass rate" in out and "raw" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["knowledge", "show", "--run", "nope"], "no run named 'nope'"),
        (["knowledge", "show", "--version", "42"], "no knowledge version 42"),
        (["knowledge", "diff", "1", "2"], "no knowledge version 1"),
        (["knowledge", "extract", "--run", "nope"], "no run named 'nope'"),
        (["eval", "--env", "oel/Nope-v0"], "unknown environment"),
    ],
)
def test_cli_errors_are_one_line(db, args, message) -> None:
    result = CliRunner().invoke(app, [*args, "--db", db])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
