"""`oel consolidate`: move a round's knowledge (or its rewards) into the weights, by any registered method.

The flags are generated from the settings dataclasses (`distill.job_config.JobConfig`
and every method's `Config`), so each default is written once, in the
dataclass; a flag that the chosen method does not take is an error naming the
ones it does. The job runs with a rich progress bar (loss, KL or reward,
tokens/s), and any problem the user can fix (no such round, no knowledge yet,
a damaged checkpoint, a model folder that will not load, an environment or
options that cannot be made, a game that will not load or generate, an
output folder it cannot write) is one `error: ...` line and exit code 1.
Running the same command again after an interruption resumes from the last
snapshot.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import typer

from distill.config_fields import command_from
from distill.methods import METHODS, method_class
from envs.command_errors import fail
from memory.cli import db_option


def _sections() -> tuple[list[type], dict[str, list[str]]]:
    """JobConfig and every method's Config (imports each module), and field -> the methods that take it."""
    from distill.job_config import JobConfig

    configs = {
        f"{name}" if mode == "text" else f"{name} scored": method_class(name, mode).Config
        for name, modes in METHODS.items()
        for mode in modes
    }
    owners: dict[str, list[str]] = {}
    for name, config in configs.items():
        for field in dataclasses.fields(config):
            owners.setdefault(field.name, []).append(name)
    return [JobConfig, *dict.fromkeys(configs.values())], owners


def run_consolidation(values: dict[str, Any]) -> None:
    """Build, set up and train the job for `values` with a progress bar; errors become one line."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.model import ModelLoadError
    from distill.consolidation import make_job
    from distill.errors import ConsolidationError
    from envs.checks import ENV_ERRORS
    from memory.errors import StoreError
    from memory.store import ExperienceStore

    console = Console()
    db = values.pop("db", None)
    try:
        with ExperienceStore.open(db) as store:
            job = make_job(values, store)
            try:
                with console.status("loading the student and the teacher ..."):
                    job.setup()
                columns = (
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[signal]}"),
                    TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(),
                )  # fmt: skip
                with Progress(*columns, console=console) as progress:
                    bar = progress.add_task(
                        f"{job.config.method} round {job.config.round}", total=job.config.steps,
                        completed=job.start_step, loss="-", signal="", tps="-",
                    )  # fmt: skip

                    def on_step(metrics: dict) -> None:
                        signal = " ".join(
                            f"{key} {metrics[key]:.4g}"
                            for key in ("kl", "nll", "reward_mean")
                            if key in metrics
                        )
                        if "kept_groups" in metrics:
                            signal += f" groups {metrics['kept_groups']}/{metrics['groups']}"
                        tokens = metrics.get("tokens", 0.0)
                        progress.update(
                            bar, advance=1, loss=f"{metrics['loss']:.4f}", signal=signal,
                            tps=f"{tokens / max(metrics['seconds'], 1e-9):.1f}",
                        )  # fmt: skip

                    result = job.train(on_step)
            finally:
                job.cleanup()
    except (ConsolidationError, ModelLoadError, StoreError, *ENV_ERRORS) as exc:
        fail(str(exc))
    resumed = f" (resumed after step {result.start_step})" if result.start_step else ""
    console.print(f"checkpoint {result.checkpoint_id} at {result.out}{resumed}")


def build_command() -> Any:
    """The `oel consolidate` click command; its flags come from the settings dataclasses.

    Building it imports every method module (torch, transformers), so the
    root command builds it only when `consolidate` is actually used
    (`oel.cli`), and `oel --help` stays fast.
    """
    methods = ", ".join(METHODS)
    sections, owners = _sections()
    command = command_from(
        sections,
        run_consolidation,
        prefix=lambda name: f"(for {', '.join(owners[name])}) " if name in owners else "",
        extra=[
            inspect.Parameter(
                "db",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=str | None,
                default=db_option(),
            )
        ],  # fmt: skip
        doc=f"Consolidate a round into the weights: {methods}. A flag marked (for ...) is those methods'.",
    )
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command("consolidate")(command)
    return typer.main.get_command(app)


SHORT_HELP = "Consolidate a round into the weights (OPCD, off-policy CD, SFT, RL, OPCD+RL)."
