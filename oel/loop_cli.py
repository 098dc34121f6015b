"""`oel loop` and `oel report`: run the online loop from a run file, and turn a run into a report.

The command layer only: flags and the run file become a `LoopConfig`, the
loop's progress becomes rich bars (one per phase) and a one-screen summary
table per round, and any problem the user can fix (a bad run file, an
unreachable store, a model that will not load, a failed consolidation, a game
that will not load or generate, a checkpoints folder it cannot write) is one
`error: ...` line with exit code 1. An interrupted loop says how to resume:
run the same command again. With `--ray` (or a run file's `[ray]`), collection
and evaluation run on Ray rollout workers, and each collection says which
worker played which seeds.
"""

from __future__ import annotations

import signal
from typing import Any

import typer

from envs.command_errors import fail, reported
from memory.cli import db_option
from oel.conditions import CONDITIONS

RAY_HELP = (
    "Play collection and evaluation on Ray rollout workers: local, auto, ray://HOST:10001 or HOST:6379 "
    "(overrides \\[ray].address; needs a PostgreSQL store)."
)


def _fmt(value: Any, pattern: str = "{:.1%}") -> str:
    return "-" if value is None else pattern.format(value)


def summary_table(summary: Any) -> Any:
    """The end-of-round screen: the three pass rates, tokens, knowledge, lineage and phase times."""
    from rich.table import Table

    from memory.stats import format_task_rate

    res = summary.results
    table = Table(title=f"round {summary.index}", show_header=True)
    for column in ("condition", "pass rate [95% CI over tasks] (tasks; episodes)", "step acc", "tokens/ep",
                   "prompt tok/ep", "checkpoint"):  # fmt: skip
        table.add_column(column, justify="right")
    for name in CONDITIONS:
        row = summary.condition(name)
        if row is None:
            continue
        rate = format_task_rate(row["task_score"], row["tasks"], row["wins"], row["episodes"])
        table.add_row(
            name, rate, _fmt(row.get("step_accuracy"), "{:.2f}"), _fmt(row["tokens_per_episode"], "{:.1f}"),
            _fmt(row["prompt_tokens_per_episode"], "{:.0f}"), str(row["checkpoint_id"]),
        )  # fmt: skip
    collect, extract, cons = res.get("collect", {}), res.get("extract", {}), res.get("consolidate", {})
    phases = ("collect", "extract", "consolidate", "evaluate")
    times = ", ".join(f"{p} {_fmt(summary.seconds(p), '{:.0f}s')}" for p in phases)
    version = extract.get("knowledge_version_id")
    knowledge = (
        "no knowledge extracted" if version is None
        else f"knowledge v{version}: {extract.get('items')} items, {extract.get('tokens')} tokens"
    )  # fmt: skip
    table.caption = (
        f"train: {collect.get('episodes')} episodes, pass {_fmt(collect.get('pass_rate'))} | "
        f"{knowledge} | {cons.get('method')}: "
        f"checkpoint {collect.get('checkpoint_id')} -> {cons.get('checkpoint_id')}, "
        f"last loss {_fmt(cons.get('last_loss'), '{:.4f}')}\n{times}"
    )
    return table


class RichLoopUI:
    """Draws the loop's progress: one bar per phase, a status line while watching (a printed line per
    new count when the output is not a terminal), a table per round."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
        )  # fmt: skip
        self.task: Any = None
        self.wait_status: Any = None
        self.waited: int | None = None
        """The unclaimed count last printed while watching without a terminal."""

    def phase_started(self, round_index: int, phase: str, total: int | None) -> None:
        self._stop_waiting()
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.progress.start()
        self.task = self.progress.add_task(f"round {round_index} {phase}", total=total, info="")

    def advance(self, **fields: Any) -> None:
        if self.task is None:
            return
        info = " ".join(
            f"{k} {v:.1%}" if k == "success" else f"{k} {v:.4f}" for k, v in fields.items() if v is not None
        )
        self.progress.update(self.task, advance=1, info=info)

    def phase_done(self, round_index: int, phase: str, result: dict[str, Any]) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.progress.stop()
        how = "already done" if result.get("resumed") else f"{result.get('seconds', 0):.0f}s"
        self.console.print(f"round {round_index} {phase}: {how}")
        if result.get("workers"):
            from rich.markup import escape

            from agent.ray_pool import seed_ranges

            for worker, seeds in sorted(result["workers"].items()):
                self.console.print(f"  {escape(worker)} played seeds {seed_ranges(seeds)}")

    def waiting(self, have: int, need: int) -> None:
        text = f"watching the store: {have}/{need} new episodes"
        if not self.console.is_terminal:  # a log file: one line whenever the count changes
            if have != self.waited:
                self.console.print(text)
            self.waited = have
            return
        if self.wait_status is None:
            self.wait_status = self.console.status("")
            self.wait_status.start()
        self.wait_status.update(text)

    def _stop_waiting(self) -> None:
        self.waited = None
        if self.wait_status is not None:
            self.wait_status.stop()
            self.wait_status = None

    def round_done(self, summary: Any) -> None:
        self.console.print(summary_table(summary))

    def close(self) -> None:
        self._stop_waiting()
        self.progress.stop()


def _interrupt(_signum: int, _frame: Any) -> None:
    """SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: record the phase as failed, exit."""
    raise KeyboardInterrupt


def loop(
    config: str = typer.Option(..., "--config", help="Run file (TOML); presets are in runs/."),
    rounds: int | None = typer.Option(
        None, min=1, help="Rounds to complete in total (overrides \\[run].rounds)."
    ),
    watch: bool = typer.Option(
        False,
        help="Wait for episodes other processes write (oel play --run NAME) and start a round on a "
        "trigger (\\[watch] min_episodes / every_minutes) instead of collecting.",
    ),  # fmt: skip
    db: str | None = db_option(overrides="\\[run].db"),
    ray: str | None = typer.Option(None, "--ray", help=RAY_HELP),
    workers: int | None = typer.Option(None, min=1, help="Ray rollout workers (overrides \\[ray].workers)."),
) -> None:
    """Run the online loop: collect, extract knowledge, consolidate it, evaluate, deploy; round after round.

    Every phase is recorded in the store; run the same command again after an
    interruption (even kill -9) and it resumes after the last completed phase.
    """
    from agent.cli import table_console
    from agent.model import ModelLoadError
    from agent.policy import PolicyError
    from agent.ray_pool import PolicySpec, RayError, RolloutPool
    from distill.errors import ConsolidationError
    from envs.checks import ENV_ERRORS
    from memory.errors import StoreError
    from memory.knowledge.errors import KnowledgeError
    from memory.store import ExperienceStore
    from oel.loop import OnlineLoop
    from oel.run_config import LoopConfigError, load_loop_config

    signal.signal(signal.SIGTERM, _interrupt)
    console = table_console()
    ui = RichLoopUI(console)
    try:
        run_config = load_loop_config(config)
        run_config.ray.address = ray or run_config.ray.address
        run_config.ray.workers = workers or run_config.ray.workers
        url = db or run_config.run.db
        with ExperienceStore.open(url) as store:
            spec = PolicySpec(run_config.run.backend, run_config.run.policy_options())
            pool = RolloutPool(run_config.ray, store, spec) if run_config.ray.enabled else None
            try:
                OnlineLoop(run_config, store, ui, pool).run(rounds, watch=watch)
            finally:
                if pool is not None:
                    pool.close()
    except (
        LoopConfigError,
        RayError,
        StoreError,
        ModelLoadError,
        PolicyError,
        ConsolidationError,
        KnowledgeError,
        *ENV_ERRORS,
    ) as exc:
        ui.close()
        fail(str(exc))
    except KeyboardInterrupt:
        ui.close()
        typer.echo(
            "interrupted; run the same command again to resume after the last completed phase", err=True
        )
        raise typer.Exit(130) from None
    ui.close()
    name = run_config.run.name
    console.print(f"run {name!r}: done. `oel report --run {name} --out report/` writes the plots.")


def report(
    out: str = typer.Option("report", "--out", help="Folder for report.md and its PNG plots."),
    run: str = typer.Option("default", help="Run name."),
    db: str | None = db_option(),
) -> None:
    """Write a Markdown report with plots: pass rate per round (3 conditions), tokens, knowledge, losses."""
    from memory.errors import StoreError
    from memory.store import ExperienceStore
    from oel.report import ReportError, write_report

    with reported(ReportError, StoreError), ExperienceStore.open(db) as store:
        path = write_report(store, run, out)
    typer.echo(f"wrote {path}")


def register(root: typer.Typer) -> None:
    """Attach `oel loop` and `oel report`."""
    root.command("loop")(loop)
    root.command("report")(report)
