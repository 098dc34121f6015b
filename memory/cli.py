"""`oel store ...`: inspect and maintain the experience store.

Thin wrappers: each command opens the store, calls one function of
`memory.queries` (or the store), and prints the DataFrame as an aligned rich
table. Every command takes `--db URL` (default `$OEL_DB_URL`, else
`sqlite:///oel.db` in the working directory). A `StoreError` (bad URL,
unreachable server, unknown schema revision, failed query) becomes one
`error: ...` line on stderr and exit code 1, never a stack trace
(`envs.command_errors.fail`). Every command but `upgrade` opens the store read-only,
so a mistyped SQLite path is such an error rather than a new, empty database.

`db_option` is the `--db` flag of every command that opens the store, at
every floor above this one too (`oel play`, `oel knowledge`, `oel
consolidate`, `oel eval`, `oel loop`, `oel report`, `oel ui`): the store is
memory's, so its flag is written here once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from envs.command_errors import fail, reported

if TYPE_CHECKING:
    import pandas as pd

    from memory.store import ExperienceStore

app = typer.Typer(
    help="The SQL experience store: stats, episodes, transcripts, export, SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def db_option(overrides: str | None = None) -> Any:
    """The `--db URL` option (None: `$OEL_DB_URL`, else the SQLite file oel.db in the working directory);
    `overrides` names the run-file key it takes precedence over, for its help text."""
    where = f"overrides {overrides}; " if overrides else ""
    return typer.Option(
        None,
        "--db",
        help=f"Database URL ({where}default: $OEL_DB_URL, else sqlite file oel.db in the working directory).",
    )


INCOMPLETE_OPTION = typer.Option(
    False, "--include-incomplete", help="Also count episodes still running or left by a crashed writer."
)


def register(root: typer.Typer) -> None:
    """Attach this package's commands to the root `oel` command."""
    root.add_typer(app, name="store")


@contextmanager
def _store(db: str | None) -> Iterator[ExperienceStore]:
    """Open the store read-only for one command; a StoreError (opening, or in the body) becomes one line and
    exit 1. Read-only, so a mistyped SQLite path is an error rather than a new, empty database."""
    from memory.store import ExperienceStore, StoreError

    with reported(StoreError), ExperienceStore.open(db, read_only=True) as store:
        yield store


def _cell(value: Any) -> str:
    """One table cell: short floats, blobs as their size, missing values blank, markup escaped."""
    from rich.markup import escape

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bytes | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, list):
        return f"\\[{len(value)} items]"
    return escape(str(value))  # a stored action such as "[down]" is text, not rich markup


def _print_frame(df: pd.DataFrame, title: str | None = None) -> None:
    """Print a DataFrame as an aligned rich table (numbers right-aligned)."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in df.columns:
        numeric = df[column].dtype.kind in "iuf"
        table.add_column(str(column), justify="right" if numeric else "left", overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console = Console()
    if not console.is_terminal:  # piped or captured: print at natural width rather than squeeze into 80
        natural = Measurement.get(console, console.options.update(width=400), table).maximum
        console = Console(width=max(console.width, min(natural, 400)))
    console.print(table)
    if df.empty:
        typer.echo("(no rows)")


@app.command()
def stats(
    by: str = typer.Option(
        "round", "--by", help="Comma-separated: round, env, split, checkpoint, knowledge_version, run."
    ),
    run: str | None = typer.Option(None, "--run", help="Only this run (name)."),
    env: str | None = typer.Option(None, "--env", help="Only this environment id."),
    split: str | None = typer.Option(None, "--split", help="Only this split."),
    include_incomplete: bool = INCOMPLETE_OPTION,
    db: str | None = db_option(),
) -> None:
    """Success rate, mean return, steps and tokens per episode, grouped by --by."""
    from memory import queries

    keys = tuple(key.strip() for key in by.split(",") if key.strip())
    with _store(db) as store:
        df = queries.success_rate(
            store, by=keys, include_incomplete=include_incomplete, run=run, env=env, split=split
        )
        _print_frame(df, title=f"success rate by {', '.join(keys) or 'all'}")


@app.command()
def episodes(
    run: str | None = typer.Option(None, "--run", help="Only this run (name)."),
    env: str | None = typer.Option(None, "--env", help="Only this environment id."),
    split: str | None = typer.Option(None, "--split", help="Only this split."),
    round: int | None = typer.Option(None, "--round", help="Only this round index."),
    checkpoint: int | None = typer.Option(None, "--checkpoint", help="Only this checkpoint id."),
    won: bool | None = typer.Option(None, "--won/--not-won", help="Only won (or only not won) episodes."),
    limit: int = typer.Option(50, "--limit", help="At most this many rows."),
    include_incomplete: bool = INCOMPLETE_OPTION,
    db: str | None = db_option(),
) -> None:
    """List episodes matching the filters, oldest first."""
    from memory import queries

    with _store(db) as store:
        df = queries.episodes(
            store, run=run, env=env, split=split, round=round, checkpoint=checkpoint, won=won,
            limit=limit, include_incomplete=include_incomplete,
        )  # fmt: skip
        columns = ["id", "run", "round", "env", "task_id", "seed", "split", "status", "total_return", "won"]
        _print_frame(df[[*columns, "n_steps", "n_tokens", "feedback"]], title="episodes")


@app.command()
def show(
    episode_id: int = typer.Argument(..., help="The episode to print."),
    prompts: bool = typer.Option(False, "--prompts", help="Also print the full prompt of every step."),
    db: str | None = db_option(),
) -> None:
    """Print one episode as a readable transcript."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    from memory import queries

    console = Console()
    with _store(db) as store:
        info = queries.episode(store, episode_id)
        df = queries.transcript(store, episode_id)
    outcome = "won" if info["won"] else "lost" if info["lost"] else "not won"
    console.print(
        f"[bold]episode {episode_id}[/bold]  {info['env']}  task {info['task_id']}  seed {info['seed']}  "
        f"split {info['split']}  run {info['run']}  round {_cell(info['round'])}  status {info['status']}"
    )
    for row in df.itertuples(index=False):
        body = Text()
        if prompts:
            body.append("prompt:\n", style="bold")
            body.append(row.prompt + "\n\n")
        else:
            body.append("state:\n", style="bold")
            body.append(row.state + "\n\n")
        body.append("reply: ", style="bold")
        body.append(row.completion_text + "\n")
        body.append("action: ", style="bold")
        body.append(row.action + "\n")
        body.append("observation: ", style="bold")
        body.append(row.observation)
        tokens = "?" if row.completion_ids is None else len(row.completion_ids)
        title = f"step {row.index}  reward {row.reward:g}  {tokens} tokens  {row.latency_s:.2f} s"
        console.print(Panel(body, title=title, title_align="left"))
    if info["status"] == "complete":
        console.print(f"[bold]{outcome}[/bold], return {_cell(info['total_return'])}: {info['feedback']}")
    else:
        console.print("[bold]incomplete[/bold] (still running, or its writer crashed)")


class ExportFormat(StrEnum):
    """File formats `oel store export` writes."""

    csv = "csv"
    parquet = "parquet"
    jsonl = "jsonl"


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="File to write."),
    fmt: ExportFormat = typer.Option(ExportFormat.csv, "--format", help="csv, parquet or jsonl."),
    table: str = typer.Option(
        "episodes", "--table", help="Table: episodes, steps, runs, rounds, checkpoints, ..."
    ),
    db: str | None = db_option(),
) -> None:
    """Export one table to CSV, Parquet or JSONL (token arrays as lists; JSON text in CSV)."""
    from memory import queries

    if out.is_dir():
        fail(
            f"--out {str(out)!r} is a folder; name the file to write, e.g. {str(out / (table + '.' + fmt))!r}"
        )
    if not out.parent.is_dir():
        fail(f"directory {str(out.parent)!r} does not exist")
    with _store(db) as store:
        df = queries.table(store, table)
    try:
        if fmt is ExportFormat.parquet:
            df.to_parquet(out, index=False)
        elif fmt is ExportFormat.jsonl:
            df.to_json(out, orient="records", lines=True, date_format="iso")
        else:
            for column in df.columns:
                if df[column].map(lambda v: isinstance(v, list | dict)).any():
                    df[column] = df[column].map(lambda v: None if v is None else json.dumps(v))
            df.to_csv(out, index=False)
    except OSError as exc:
        fail(f"cannot write {str(out)!r}: {exc.strerror or exc}")
    typer.echo(f"wrote {len(df)} rows of {table} to {out}")


@app.command()
def sql(
    query: str = typer.Argument(
        ..., help='One SQL statement, e.g. "SELECT env_id, count(*) FROM episodes GROUP BY 1".'
    ),
    db: str | None = db_option(),
) -> None:
    """Run one ad-hoc statement on a read-only transaction (the database refuses writes)."""
    with _store(db) as store:
        _print_frame(store.read_only_sql(query))


@app.command()
def upgrade(db: str | None = db_option()) -> None:
    """Migrate the database's schema to the one this oel uses (creating it if empty)."""
    from memory.store import ExperienceStore, StoreError

    with reported(StoreError):
        before, after = ExperienceStore.upgrade(db)
    if before == after:
        typer.echo(f"already at schema revision {after}")
    else:
        typer.echo(f"upgraded schema from revision {before or '(empty)'} to {after}")
