"""`oel knowledge extract|show|diff`: experiential knowledge from the command line.

Thin wrappers over `memory.knowledge` (extraction, accumulation, versions).
Heavy imports (torch,
transformers, the policy) happen inside the commands so `oel --help` stays
fast. Every user-facing failure (unknown run or version, no episodes, a model
that does not load, a bad extractor spec) is one `error: ...` line and exit
code 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from agent.cli_errors import CommandError, errors_as_lines
from memory.cli import db_option

if TYPE_CHECKING:
    from memory.store import ExperienceStore

app = typer.Typer(
    help="Experiential knowledge: extract it from logged episodes, show versions, diff them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

RUN_HELP = "Run name whose episodes and knowledge are used."
MODEL_HELP = "The policy's local HF folder (default: embedded SmolLM2-135M-Instruct)."


def _run_id(store: ExperienceStore, run: str) -> int:
    run_id = store.get_run(run)
    if run_id is None:
        raise CommandError(f"there is no run named {run!r}; play episodes with `oel play --run {run}` first")
    return run_id


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else escape(str(v)) for v in row))
    return table


def _load_policy(model: str | None, backend: str) -> tuple[Any, str]:
    """The policy and its folder path (as stored on checkpoints)."""
    from agent.backends import make_policy
    from agent.model import resolve_model_path

    path = str(resolve_model_path(model))
    return make_policy(backend, path), path


@app.command("extract")
def extract(
    run: str = typer.Option("default", help=RUN_HELP),
    round: int | None = typer.Option(
        None, "--round", help="Use this round's train episodes and file the knowledge under it."
    ),
    episodes: int = typer.Option(32, min=1, help="Extract from the N most recent train episodes."),
    env: str | None = typer.Option(None, help="Only episodes of this environment id."),
    db: str | None = db_option(),
    model: str | None = typer.Option(None, help=MODEL_HELP + " Its tokenizer measures the cap."),
    backend: str = typer.Option("hf", help="Policy backend: hf or vllm."),
    extractor_model: str | None = typer.Option(
        None,
        help="Extractor model (default: the policy itself): a local HF folder, or for the langchain "
        "backend package.module:attribute naming a chat model or a factory.",
    ),
    extractor_backend: str = typer.Option("hf", help="Extractor backend: hf, vllm or langchain."),
    batch: int = typer.Option(16, min=1, help="Trajectories per batched extractor call."),
    # memory.knowledge.extract.ExtractionConfig's default, written again rather than imported: that module
    # loads pandas and SQLAlchemy, and `oel --help` builds this signature.
    max_new_tokens: int = typer.Option(128, min=1, help="Longest extractor reply, in tokens."),
    token_cap: int = typer.Option(2048, min=1, help="Most tokens the rendered knowledge may take."),
    with_knowledge: bool = typer.Option(
        True, help="Show the current knowledge to the extractor (OEL's exp_sel_with_prev)."
    ),
) -> None:
    """Extract knowledge items from logged train episodes, merge them, and store a new knowledge version."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.extractor import make_extractor, policy_token_counter
    from memory import queries
    from memory.knowledge.extract import ExtractionConfig, extract_knowledge
    from memory.knowledge.generator import tokenizer_counter
    from memory.knowledge.parse import RejectionCounts
    from memory.store import ExperienceStore

    console = Console()
    with errors_as_lines(), ExperienceStore.open(db) as store:
        run_id = _run_id(store, run)
        found = queries.episodes(store, run=run_id, split="train", round=round, env=env)
        if found.empty:
            where = "" if round is None else f" in round {round}"
            raise CommandError(f"run {run!r} has no complete train episodes{where} to extract from")
        chosen = [int(e) for e in found["id"].tolist()[-episodes:]]
        round_id = store.start_round(run_id, round) if round is not None else None
        with console.status("loading the models ..."):
            from agent.model import resolve_model_path

            if extractor_model is None:
                policy, path = _load_policy(model, backend)
                generator, _ = make_extractor(policy)
                counter = policy_token_counter(policy)
                extractor_checkpoint = store.checkpoint_for_path(path, run_id=run_id)
            else:
                from transformers import AutoTokenizer

                generator, extractor = make_extractor(None, extractor_model, extractor_backend)
                tokenizer = AutoTokenizer.from_pretrained(
                    str(resolve_model_path(model)), local_files_only=True
                )
                counter = tokenizer_counter(tokenizer)
                extractor_checkpoint = (
                    None
                    if extractor_backend == "langchain"
                    else store.checkpoint_for_path(str(resolve_model_path(extractor_model)), run_id=run_id)
                )
        config = ExtractionConfig(
            max_new_tokens=max_new_tokens, batch=batch, with_knowledge=with_knowledge, token_cap=token_cap
        )
        columns = (
            TextColumn("[bold]extracting"), BarColumn(), MofNCompleteColumn(),
            TextColumn("items kept {task.fields[kept]}, rejected {task.fields[rejected]}"),
            TimeElapsedColumn(),
        )  # fmt: skip
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("extract", total=len(chosen), kept=0, rejected=0)

            def on_batch(done: int, _total: int, counts: RejectionCounts) -> None:
                progress.update(
                    task, completed=done, kept=counts.accepted, rejected=sum(counts.rejected.values())
                )

            result = extract_knowledge(
                store, generator, chosen, run_id=run_id, round_id=round_id,
                extractor_checkpoint_id=extractor_checkpoint, count_tokens=counter, config=config,
                on_batch=on_batch,
            )  # fmt: skip
    counts = result.counts.as_dict()
    console.print(_table("extractor replies and items", ["count", "n"], [list(kv) for kv in counts.items()]))
    console.print(
        f"version {result.version_id}: {result.n_items} items, {result.n_tokens} tokens "
        f"({result.token_count}; cap {token_cap}, {result.dropped} left out); "
        f"{len(result.added)} new items, {len(result.agreed)} items gained votes"
    )


@app.command("add")
def add(
    file: str = typer.Option(
        ..., "--file", help="Markdown file with one '- EXPERIENCE ITEM: ...' line per rule."
    ),
    run: str = typer.Option("default", help="Run the knowledge belongs to (created if new)."),
    author: str = typer.Option("person", help="Who wrote it; recorded as each item's provenance."),
    round: int | None = typer.Option(None, "--round", help="File the knowledge under this round."),
    model: str | None = typer.Option(None, help=MODEL_HELP + " Its tokenizer measures the knowledge."),
    token_cap: int = typer.Option(2048, min=1, help="Most tokens the knowledge may take in a prompt."),
    db: str | None = db_option(),
) -> None:
    """Store a person-written knowledge version (OPCD's system-prompt distillation uses it like any other)."""
    from transformers import AutoTokenizer

    from agent.model import resolve_model_path
    from memory.knowledge.authored import add_authored_knowledge, read_items
    from memory.knowledge.generator import tokenizer_counter
    from memory.store import ExperienceStore

    with errors_as_lines():
        items = read_items(file)
        tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path(model)), local_files_only=True)
        with ExperienceStore.open(db) as store:
            run_id = store.ensure_run(run)
            round_id = store.start_round(run_id, round) if round is not None else None
            version_id, _text, created = add_authored_knowledge(
                store, run_id, items, author=author, round_id=round_id,
                count_tokens=tokenizer_counter(tokenizer), token_cap=token_cap, source=str(file),
            )  # fmt: skip
    how = "stored" if created else "already stored (same text)"
    typer.echo(f"version {version_id} {how}: {len(items)} items by {author} in run {run!r}")


@app.command("show")
def show(
    version: int | None = typer.Option(None, help="Knowledge version id (default: list the run's versions)."),
    run: str = typer.Option("default", help=RUN_HELP),
    db: str | None = db_option(),
) -> None:
    """List a run's knowledge versions, or show one version's text and its items with votes."""
    from rich.console import Console
    from rich.markup import escape

    from memory import queries
    from memory.store import ExperienceStore

    console = Console()
    with errors_as_lines(), ExperienceStore.open(db) as store:
        if version is None:
            versions = queries.knowledge_versions(store, _run_id(store, run))
            rows = [
                [r.id, r.round, r.kind, r.n_items, r.n_tokens, r.created_at]
                for r in versions.itertuples(index=False)
            ]
            console.print(
                _table(
                    f"knowledge versions of run {run}",
                    ["id", "round", "kind", "items", "tokens", "created"],
                    rows,
                )
            )
            return
        row = queries.knowledge_versions(store).query("id == @version")
        if row.empty:
            raise CommandError(f"there is no knowledge version {version}")
        info = row.iloc[0]
        run_id = store.get_run(info["run"])
        console.print(
            f"[bold]version {version}[/bold] ({info['kind']}, run {escape(str(info['run']))}, "
            f"{info['n_items']} items, {info['n_tokens']} tokens)"
        )
        console.print(escape(store.knowledge_text(version)) or "(empty)")
        items = queries.knowledge_items(store, run_id, active_only=False, version_id=version)
        if not items.empty:
            rows = [[r.id, r.votes, r.n_sources, r.round, r.text] for r in items.itertuples(index=False)]
            console.print(_table("items", ["item", "votes", "sources", "round", "text"], rows))


@app.command("diff")
def diff(
    v1: int = typer.Argument(..., help="The older knowledge version id."),
    v2: int = typer.Argument(..., help="The newer knowledge version id."),
    db: str | None = db_option(),
) -> None:
    """What changed between two knowledge versions: items added (+), dropped (-), and vote changes."""
    import difflib

    from rich.console import Console
    from rich.markup import escape

    from memory import queries
    from memory.store import ExperienceStore

    console = Console()
    with errors_as_lines(), ExperienceStore.open(db) as store:
        versions = queries.knowledge_versions(store).set_index("id")
        for v in (v1, v2):
            if v not in versions.index:
                raise CommandError(f"there is no knowledge version {v}")
        texts = {v: store.knowledge_text(v) for v in (v1, v2)}
        if versions.loc[v1, "kind"] == "raw" or versions.loc[v2, "kind"] == "raw":
            lines = difflib.unified_diff(
                texts[v1].splitlines(), texts[v2].splitlines(), f"version {v1}", f"version {v2}", lineterm=""
            )
            console.print(escape("\n".join(lines)) or "(identical)")
            return
        items = {}
        for v in (v1, v2):
            run_id = store.get_run(versions.loc[v, "run"])
            frame = queries.knowledge_items(store, run_id, active_only=False, version_id=v)
            items[v] = {int(r.id): r for r in frame.itertuples(index=False)}
        # votes are the item's current count; the version records membership, not past votes
        added = [items[v2][i] for i in items[v2] if i not in items[v1]]
        dropped = [items[v1][i] for i in items[v1] if i not in items[v2]]
        kept = [items[v2][i] for i in items[v2] if i in items[v1]]
        rows = [["+", r.id, r.votes, r.text] for r in added]
        rows += [["-", r.id, r.votes, r.text] for r in dropped]
        rows += [["=", r.id, r.votes, r.text] for r in kept]
        console.print(_table(f"version {v1} -> {v2}", ["", "item", "votes", "text"], rows))
        console.print(
            f"{len(added)} added, {len(dropped)} dropped, {len(kept)} kept; "
            f"tokens {versions.loc[v1, 'n_tokens']} -> {versions.loc[v2, 'n_tokens']}"
        )


def register(root: typer.Typer) -> None:
    """Attach `oel knowledge ...` to the root command."""
    root.add_typer(app, name="knowledge")
