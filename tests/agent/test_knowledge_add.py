"""`oel knowledge add`: person-written knowledge stored like extracted knowledge, its author as provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from memory import queries
from memory.knowledge.authored import add_authored_knowledge, read_items
from memory.knowledge.errors import KnowledgeError
from memory.store import ExperienceStore
from oel.cli import command

RULES = """# FrozenLake rules

Some prose that is not an item.
- EXPERIENCE ITEM: H is a hole; stepping on it loses.
- EXPERIENCE ITEM: G is the goal in the bottom-right corner.
"""


def _invoke(*args: str):
    return CliRunner().invoke(command(), list(args), env={"COLUMNS": "200"})


def test_add_stores_an_authored_version_once_with_author_and_no_sources(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'oel.db'}"
    rules = tmp_path / "rules.md"
    rules.write_text(RULES)
    first = _invoke("knowledge", "add", "--file", str(rules), "--run", "r", "--author", "ada", "--db", db)
    assert first.exit_code == 0, first.output
    assert "version 1 stored: 2 items by ada" in first.output
    again = _invoke("knowledge", "add", "--file", str(rules), "--run", "r", "--db", db)
    assert again.exit_code == 0 and "version 1 already stored" in again.output
    with ExperienceStore.open(db) as store:
        run_id = store.get_run("r")
        version = store.knowledge_version(1, run_id=run_id)
        assert version["kind"] == "authored" and version["meta"]["author"] == "ada"
        assert version["text"].splitlines() == [
            "- EXPERIENCE ITEM: H is a hole; stepping on it loses.",
            "- EXPERIENCE ITEM: G is the goal in the bottom-right corner.",
        ]
        items = queries.knowledge_items(store, run_id, version_id=1)
        assert items["n_sources"].tolist() == [0, 0] and items["prompt_version"].tolist() == ["authored"] * 2
        assert (
            store.latest_knowledge_version(run_id)[0] == 1
        )  # deployable and distillable like extracted knowledge


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "is empty"), ("   \n", "is empty"), ("# only prose\nno items here\n", "holds no items")],
)
def test_files_without_knowledge_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    rules = tmp_path / "rules.md"
    rules.write_text(text)
    with pytest.raises(KnowledgeError, match=message):
        read_items(rules)
    result = _invoke("knowledge", "add", "--file", str(rules), "--db", f"sqlite:///{tmp_path / 'oel.db'}")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    missing = _invoke(
        "knowledge", "add", "--file", str(tmp_path / "nope.md"), "--db", f"sqlite:///{tmp_path}/x.db"
    )
    assert missing.exit_code == 1 and "cannot read the knowledge file" in missing.output


def test_a_version_of_another_run_is_refused_by_eval_and_consolidate(tmp_path: Path, tiny_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'oel.db'}"
    with ExperienceStore.open(db) as store:
        mine, theirs = store.create_run("mine"), store.create_run("theirs")
        version, _text, _created = add_authored_knowledge(
            store, theirs, ["holes end the game here"], author="bo"
        )
        with pytest.raises(KnowledgeError, match="over the 4-token cap"):
            add_authored_knowledge(
                store, mine, ["a rule much longer than four tokens"], author="bo", token_cap=4
            )
    run = ["--run", "mine", "--db", db, "--model", str(tiny_path)]
    evaluated = _invoke("eval", "--episodes", "1", "--knowledge", str(version), *run)
    assert evaluated.exit_code == 1 and "belongs to another run" in evaluated.output
    consolidated = _invoke("consolidate", "--round", "0", "--knowledge", str(version), "--steps", "1", *run)
    assert consolidated.exit_code == 1 and "belongs to another run" in consolidated.output
