"""`oel store ...` through typer's CliRunner on both backends: tables, export, read-only SQL, clean errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from store_helpers import make_steps
from typer.testing import CliRunner

from memory import queries
from memory.cli import app
from memory.store import ExperienceStore

runner = CliRunner()


@pytest.fixture
def filled(store: ExperienceStore) -> ExperienceStore:
    run = store.create_run("exp")
    for index in range(2):
        round_id = store.start_round(run, index)
        for k in range(4):
            store.write_episode(
                {
                    "env_id": "oel/A-v0",
                    "task_id": f"t{k}",
                    "seed": k,
                    "split": "train",
                    "run_id": run,
                    "round_id": round_id,
                },
                make_steps(2, tag=k),
                {
                    "total_return": float(k < index + 1),
                    "won": k < index + 1,
                    "lost": False,
                    "feedback": f"fb{k}",
                },
            )
    return store


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_stats_prints_success_rate_by_round(filled: ExperienceStore) -> None:
    result = invoke("stats", "--db", filled.url, "--by", "round,env")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "oel/A-v0" in line]
    assert len(rows) == 2
    assert rows[0].split("│")[4].strip() == "0.25" and rows[1].split("│")[4].strip() == "0.5"


def test_episodes_filters_and_limit(filled: ExperienceStore) -> None:
    result = invoke("episodes", "--db", filled.url, "--round", "1", "--won", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("oel/A-v0") == 2  # round 1 has two won episodes
    result = invoke("episodes", "--db", filled.url, "--limit", "3")
    assert result.stdout.count("oel/A-v0") == 3


def test_show_prints_a_readable_transcript(filled: ExperienceStore) -> None:
    episode = int(queries.episodes(filled, round=0)["id"].iloc[0])
    result = invoke("show", str(episode), "--db", filled.url)
    assert result.exit_code == 0, result.output
    for text in ("state 0/0", "reply 0/1 [go 1]", "action: go 1", "obs 0/1", "fb0", "won"):
        assert text in result.stdout
    missing = invoke("show", "9999", "--db", filled.url)
    assert missing.exit_code == 1 and "no episode with id 9999" in missing.stderr


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_round_trips_steps(filled: ExperienceStore, tmp_path, fmt: str) -> None:
    out = tmp_path / f"steps.{fmt}"
    result = invoke("export", "--db", filled.url, "--table", "steps", "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        df = pd.read_csv(out)
        ids = [json.loads(v) for v in df["completion_ids"]]
    elif fmt == "parquet":
        df = pd.read_parquet(out)
        ids = [list(v) for v in df["completion_ids"]]
    else:
        df = pd.read_json(out, lines=True)
        ids = list(df["completion_ids"])
    assert len(df) == 16
    assert ids == queries.table(filled, "steps")["completion_ids"].tolist()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_to_a_folder_is_one_line_and_writes_nothing(
    filled: ExperienceStore, tmp_path, fmt: str
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    result = invoke("export", "--db", filled.url, "--format", fmt, "--out", str(folder))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: --out '{folder}' is a folder") and result.stderr.count("\n") == 1
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [["stats"], ["episodes"], ["show", "1"], ["sql", "SELECT 1"], ["export", "--out", "{tmp}/x.csv"]],
)
def test_reading_a_mistyped_sqlite_path_creates_no_database(tmp_path, command: list[str]) -> None:
    typo = tmp_path / "oel.bd"
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in command]
    result = invoke(*args, "--db", f"sqlite:///{typo}")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: cannot open ") and "no such database file" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the database nor the export


def test_bracketed_text_prints_as_text_not_markup(filled: ExperienceStore) -> None:
    result = invoke("sql", "SELECT '[down]' AS action, '[bold]x' AS other", "--db", filled.url)
    assert result.exit_code == 0 and "[down]" in result.stdout and "[bold]x" in result.stdout


def test_sql_reads_but_the_database_refuses_an_insert(filled: ExperienceStore) -> None:
    result = invoke("sql", "SELECT split, count(*) AS n FROM episodes GROUP BY split", "--db", filled.url)
    assert result.exit_code == 0, result.output
    assert "train" in result.stdout and "8" in result.stdout
    before = len(queries.table(filled, "runs"))
    result = invoke(
        "sql", "INSERT INTO runs (name, created_at) VALUES ('sneaky', '2020-01-01')", "--db", filled.url
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: query failed:") and "Traceback" not in result.output
    assert "read-only" in result.stderr or "readonly" in result.stderr  # the database's own refusal
    escape = "COMMIT; INSERT INTO runs (name, created_at) VALUES ('sneaky', '2020-01-01')"
    assert invoke("sql", escape, "--db", filled.url).exit_code == 1
    assert len(queries.table(filled, "runs")) == before


def test_upgrade_on_current_database(filled: ExperienceStore) -> None:
    result = invoke("upgrade", "--db", filled.url)
    assert result.exit_code == 0 and "already at schema revision" in result.stdout


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////no/such/dir/oel.db",
        "postgresql+psycopg://postgres@127.0.0.1:1/test",
        "postgress://x@y/z",
        "oel.db",
    ],
)
@pytest.mark.parametrize("command", ["stats", "sql", "upgrade"])
def test_bad_database_gives_one_error_line(url: str, command: str) -> None:
    args = [command, "SELECT 1"] if command == "sql" else [command]
    result = invoke(*args, "--db", url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_db_defaults_to_environment(filled: ExperienceStore, monkeypatch) -> None:
    monkeypatch.setenv("OEL_DB_URL", filled.url)
    result = invoke("stats", "--by", "round")
    assert result.exit_code == 0 and "0.25" in result.stdout
