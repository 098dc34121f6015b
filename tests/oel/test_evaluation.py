"""`oel eval` and the shared evaluation: held-out conditions keyed by (checkpoint, knowledge), resumable.

A tiny random Llama stands in for the policy: these tests check wiring
(versions on episodes, splits, resumption, tables, error lines), not pass rates.
The reported intervals are checked against `wilson_bounds`, an independent
computation: the Wilson interval is the set of rates the score test does not
reject, so its ends are found by bisection, not by the closed form.
"""

from __future__ import annotations

from statistics import NormalDist

import pytest
from click.testing import CliRunner

from agent.policy import SamplingParams
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from memory import queries
from memory.knowledge.raw import build_raw_version
from memory.stats import format_rate, wilson_interval
from memory.store import ExperienceStore
from oel.cli import command
from oel.evaluation import EvalConfig, evaluate

FAST = SamplingParams(max_new_tokens=4)
Z = NormalDist().inv_cdf(0.975)


def wilson_bounds(wins: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval as the rates p the score test accepts: (wins/n - p)^2 <= Z^2 p (1 - p) / n."""
    rate = wins / n

    def rejected(p: float) -> bool:
        return (rate - p) ** 2 > Z * Z * p * (1 - p) / n

    def bisect(outside: float, inside: float) -> float:
        for _ in range(200):
            middle = (outside + inside) / 2
            outside, inside = (middle, inside) if rejected(middle) else (outside, middle)
        return inside

    low = 0.0 if wins == 0 else bisect(0.0, rate)
    high = 1.0 if wins == n else bisect(1.0, rate)
    return low, high


@pytest.mark.parametrize("n", [1, 2, 3, 19, 128])
def test_the_wilson_interval_is_the_score_tests_acceptance_region(n) -> None:
    for wins in range(n + 1):
        low, high = wilson_interval(wins, n)
        assert (low, high) == pytest.approx(wilson_bounds(wins, n), abs=1e-9), (wins, n)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="successes must be in 0..3"):
        wilson_interval(4, 3)


def test_rates_print_with_their_interval_in_points() -> None:
    for wins, n in [(0, 128), (12, 128), (16, 128), (128, 128), (2, 19)]:
        low, high = wilson_bounds(wins, n)
        expected = f"{100 * wins / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({wins}/{n})"
        assert format_rate(wins, n) == expected
    assert format_rate(2, 19) == "10.5% [2.9, 31.4] (2/19)"  # as issue 23 computed it for 2 of 19 maps


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'oel.db'}"


@pytest.fixture(scope="module")
def tiny_policy(tiny_path):
    from agent.hf_policy import HFPolicy

    return HFPolicy(tiny_path, device="cpu")


def test_conditions_record_their_version_resume_and_count_the_prompt(db, tiny_policy, tiny_path) -> None:
    with ExperienceStore.open(db) as store:
        run_id = store.create_run("eval")
        checkpoint = store.checkpoint_for_path(str(tiny_path), run_id=run_id)
        run_rollouts(tiny_policy, store, RolloutConfig(episodes=2, batch=2, sampling=FAST),
                     tags=EpisodeTags(run_id=run_id))  # fmt: skip
        extracted = store.add_knowledge_version(
            run_id=run_id,
            round_id=None,
            text="- EXPERIENCE ITEM: holes end the game",
            item_ids=[],
            n_tokens=8,
        )
        raw, _text = build_raw_version(store, run_id, token_cap=600)
        assert build_raw_version(store, run_id, token_cap=600)[0] == raw  # the same context: the same version
        config = EvalConfig(episodes=3, batch=2, sampling=FAST)
        started: list[int] = []
        results = {
            version: evaluate(
                lambda: tiny_policy,
                store,
                config,
                run_id=run_id,
                checkpoint_id=checkpoint,
                knowledge_version_id=version,
                on_start=started.append,
            )  # fmt: skip
            for version in (None, extracted, raw)
        }
        assert started == [3, 3, 3]
        for version, result in results.items():
            played = queries.episodes(store, run=run_id, split="test", checkpoint=checkpoint)
            mine = played[played["knowledge_version"].isna() if version is None
                          else played["knowledge_version"] == version]  # fmt: skip
            assert sorted(mine["seed"]) == [0, 1, 2] and result["episodes"] == 3, version
            assert result["knowledge_version_id"] == version
            assert result["prompt_tokens_per_episode"] == pytest.approx(mine["n_prompt_tokens"].mean())
            wins = int(mine["won"].astype(bool).sum())
            assert (result["wins"], result["pass_rate"]) == (wins, pytest.approx(wins / 3)), version
            assert (result["ci_low"], result["ci_high"]) == pytest.approx(wilson_bounds(wins, 3), abs=1e-9)
        # knowledge in context costs prompt tokens
        assert results[raw]["prompt_tokens_per_episode"] > results[None]["prompt_tokens_per_episode"]
        # a second evaluation of a condition plays nothing and reports the same episodes
        again = evaluate(
            lambda: pytest.fail("no model should load"), store, config, run_id=run_id,
            checkpoint_id=checkpoint,
            knowledge_version_id=extracted, on_start=started.append,
        )  # fmt: skip
        assert started[-1] == 0 and again == results[extracted]
        # the extracted knowledge is still what deploys, not the raw baseline stored after it
        assert store.latest_knowledge_version(run_id)[0] == extracted


def _ok(*args: str) -> str:
    result = CliRunner().invoke(command(), list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_cli_extract_show_diff_and_eval(db, tiny_path) -> None:
    common = ["--db", db, "--run", "cli"]
    tiny = ["--model", str(tiny_path)]
    _ok("play", "--episodes", "2", "--batch", "2", "--max-new-tokens", "4", *common, *tiny)
    out = _ok("knowledge", "extract", "--episodes", "2", "--max-new-tokens", "4", *common, *tiny)
    assert "replies" in out and "version 1:" in out
    _ok("knowledge", "extract", "--episodes", "1", "--max-new-tokens", "4", *common, *tiny)
    assert "extracted" in _ok("knowledge", "show", *common)
    assert "version 1" in _ok("knowledge", "show", "--version", "1", "--db", db)
    assert "0 added, 0 dropped" in _ok("knowledge", "diff", "1", "2", "--db", db)
    evaluate_raw = ["eval", "--episodes", "2", "--batch", "2", "--max-new-tokens", "4", "--knowledge", "raw",
                    "--token-cap", "600", *common, *tiny]  # fmt: skip
    out = _ok(*evaluate_raw)
    with ExperienceStore.open(db) as store:
        held_out = queries.episodes(store, run="cli", split="test")
    assert len(held_out) == 2 and held_out["knowledge_version"].notna().all()
    wins = int(held_out["won"].astype(bool).sum())
    per_task = held_out.groupby("task_id")["won"].apply(lambda w: w.astype(bool).mean())
    tasks, score = len(per_task), float(per_task.sum())
    low, high = wilson_bounds(score, tasks)
    [row] = [line for line in out.splitlines() if line.startswith("test pass rate")]
    shown = f"{score:g}" if score.is_integer() else f"{score:.1f}"
    rate = f"{100 * score / tasks:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    assert row.endswith(f"{rate} ({shown}/{tasks} tasks; {wins}/2 episodes)")
    assert _ok(*evaluate_raw).splitlines()[-3:] == out.splitlines()[-3:]  # resumed: the same episodes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["knowledge", "show", "--run", "nope"], "no run named 'nope'"),
        (["knowledge", "show", "--version", "42"], "no knowledge version 42"),
        (["knowledge", "diff", "1", "2"], "no knowledge version 1"),
        (["knowledge", "extract", "--run", "nope"], "no run named 'nope'"),
        (["eval", "--env", "oel/Nope-v0"], "unknown environment"),
        (["eval", "--knowledge", "7"], "no knowledge version 7"),
    ],
)
def test_cli_errors_are_one_line(db, args, message) -> None:
    result = CliRunner().invoke(command(), [*args, "--db", db])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
