"""A run with a `[ternary]` table distils each round's dense model into a packed student and deploys it.

Two rounds on the tiny random Llama in scored mode: the dense update (credit)
and then the distillation into a 2:4 ternary student, both evaluated on the
same held-out seeds. The student is what round 1 plays, the dense lineage
goes on from round 0's dense model (a packed folder cannot be trained
densely), and round 1's student continues from round 0's. The report shows
the ternary condition and what each round deployed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_helpers import tiny_sections

from distill.checkpointing import read_job
from distill.ternary.deploy import FMT, is_packed
from memory.store import ExperienceStore
from oel.loop import OnlineLoop
from oel.report import write_report
from oel.run_config import LoopConfigError, parse_loop_config


def _sections(tmp_path: Path, tiny_path: Path, **ternary) -> dict:
    sections = tiny_sections(
        tmp_path, tiny_path,
        run={"action_mode": "scored", "rounds": 2},
        collect={"episodes": 4, "batch": 4, "temperature": 2.0},
        extract={"source": "none"},
        consolidate={"method": "credit", "steps": 1, "lr": 1e-3, "train_layers": 1},
        evaluate={"episodes": 2, "batch": 2, "conditions": ["consolidated"]},
    )  # fmt: skip
    for key in ("max_new_tokens", "topk", "require_gap", "eval_episodes"):
        sections["consolidate"].pop(key)
    # the tiny model's teacher gap is 0 (random weights): the loop's mechanics are under test here
    sections["ternary"] = {"steps": 1, "batch": 2, "lr": 1e-3, "require_gap": False, "eval_episodes": 2,
                           "eval_every": 1, **ternary}  # fmt: skip
    return sections


@pytest.fixture(scope="module")
def ternary_run(tmp_path_factory, tiny_path):
    tmp = tmp_path_factory.mktemp("ternary-loop")
    config = parse_loop_config(_sections(tmp, tiny_path), "tiny")
    with ExperienceStore.open(config.run.db) as store:
        summaries = OnlineLoop(config, store).run()
        yield store, summaries, tmp


def test_each_round_distils_a_packed_student_and_evaluates_both(ternary_run) -> None:
    store, summaries, _tmp = ternary_run
    for summary in summaries:
        consolidated = summary.results["consolidate"]
        student = consolidated["ternary"]
        assert consolidated["form"] == "dense" and student["form"] == "ternary"
        assert is_packed(student["path"]) and store.checkpoint_info(student["checkpoint_id"])["fmt"] == FMT
        assert 1.0 < student["bits_per_weight"] < 2.0
        record = read_job(Path(student["path"]))
        assert record.teacher_path == consolidated["path"]  # distilled from this round's dense model
        dense, ternary = summary.condition("consolidated"), summary.condition("ternary")
        assert ternary["checkpoint_id"] == student["checkpoint_id"] != dense["checkpoint_id"]
        assert ternary["episodes"] == dense["episodes"] == 2


def test_the_student_is_deployed_and_both_lineages_continue(ternary_run) -> None:
    store, (first, second), _tmp = ternary_run
    student0 = first.results["consolidate"]["ternary"]
    assert first.results["deploy"]["checkpoint_id"] == student0["checkpoint_id"]
    assert first.results["deploy"]["form"] == "ternary"
    assert second.results["collect"]["checkpoint_id"] == student0["checkpoint_id"]  # round 1 plays it
    dense1 = read_job(Path(second.results["consolidate"]["path"]))
    assert dense1.start_path == first.results["consolidate"]["path"]  # not the packed deployment
    student1 = read_job(Path(second.results["consolidate"]["ternary"]["path"]))
    assert student1.start_path == student0["path"]  # the student keeps learning across rounds
    run_id = store.get_run("tiny")
    assert store.deployed_checkpoint(run_id)[0] == second.results["consolidate"]["ternary"]["checkpoint_id"]


def test_report_shows_the_ternary_condition_and_what_was_deployed(ternary_run) -> None:
    store, summaries, tmp = ternary_run
    text = write_report(store, "tiny", tmp / "report").read_text()
    assert "pass_ternary" in text and "pass_knowledge" not in text  # a column only for what was evaluated
    assert "ternary student's gate" in text  # the student's val curve, step by step
    last = summaries[-1].results["consolidate"]["ternary"]
    assert f"checkpoint {last['checkpoint_id']} (ternary, {last['bits_per_weight']:.2f} bits/weight)" in text


def test_deploy_dense_keeps_the_dense_model_deployed(tmp_path, tiny_path) -> None:
    sections = _sections(tmp_path, tiny_path, deploy="dense")
    sections["run"]["rounds"] = 1
    config = parse_loop_config(sections, "tiny")
    with ExperienceStore.open(config.run.db) as store:
        (summary,) = OnlineLoop(config, store).run()
        deployed = store.deployed_checkpoint(store.get_run("tiny"))[0]
        assert deployed == summary.results["consolidate"]["checkpoint_id"]
        assert summary.condition("ternary") is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ternary": {"teacher": "x"}}, "the loop sets 'teacher' itself"),
        ({"ternary": {"deploy": "both"}}, "deploy must be one of ternary, dense"),
        ({"ternary": {"pattern": "3:5"}}, "unknown pattern '3:5'"),
        ({"ternary": {"divergence": "sideways"}}, "unknown divergence 'sideways'"),
        ({"ternary": {"steps": "many"}}, "[ternary].steps: expected"),
        ({"ternary": None, "evaluate": {"conditions": ["ternary"]}}, "no [ternary] table makes a student"),
    ],
)
def test_a_bad_ternary_table_is_one_line(tmp_path, tiny_path, change, message) -> None:
    sections = _sections(tmp_path, tiny_path)
    for section, values in change.items():
        if values is None:
            sections.pop(section)
        else:
            sections[section] = {**sections[section], **values}
    with pytest.raises(LoopConfigError) as err:
        parse_loop_config(sections, "tiny")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_packed_student_needs_the_hf_backend(tmp_path, tiny_path) -> None:
    sections = _sections(tmp_path, tiny_path)
    sections["run"]["backend"] = "reference"
    with pytest.raises(LoopConfigError, match="hf backend only"):
        parse_loop_config(sections, "tiny")
