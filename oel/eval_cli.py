"""`oel eval`: play the held-out split under one condition and print its pass rate with a 95% interval.

A thin layer over `oel.evaluation` (the same code the loop's evaluate phase
runs). `--knowledge raw` pastes the run's own train trajectories under the
token cap (`memory.knowledge.raw`); `latest` or a version id puts extracted
or person-written knowledge in context. The condition's episodes are stored,
so running the command again resumes, or just reports. `--ray ADDRESS` plays
the missing seeds on Ray rollout workers (`agent.ray_pool`) instead.
"""

from __future__ import annotations

from contextlib import ExitStack

import typer

from agent.cli import (
    BACKEND_HELP,
    BASE_URL_HELP,
    ENV_KWARGS_HELP,
    MAX_NEW_TOKENS_HELP,
    RAY_HELP,
    TEMPERATURE_HELP,
    WORKERS_HELP,
    env_options,
    table_console,
)
from agent.policy import DEFAULT_SAMPLING, SamplingParams
from memory.cli import db_option

MODEL_HELP = "The policy's local HF folder (default: embedded SmolLM2-135M-Instruct)."


def evaluate_command(
    env: str = typer.Option("oel/FrozenLake-v0", help="Environment whose held-out split is played."),
    env_kwargs: str = typer.Option("{}", help=ENV_KWARGS_HELP),
    split: str = typer.Option("test", help="test (held out, for reporting) or val (for choosing settings)."),
    knowledge: str = typer.Option(
        "none",
        help="Knowledge in context: none, raw (the run's train trajectories), latest, or a version id.",
    ),
    episodes: int = typer.Option(
        128,
        min=1,
        help="Episodes to play (seeds SEED..SEED+N-1 of the split); each distinct task counts once.",
    ),
    batch: int = typer.Option(32, min=1, help="Environments stepped together."),
    seed: int = typer.Option(0, min=0, help="First held-out task."),
    run: str = typer.Option(
        "default", help="Run name whose knowledge is used and under which episodes are filed."
    ),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    backend: str = typer.Option("hf", help=BACKEND_HELP),
    base_url: str | None = typer.Option(None, help=BASE_URL_HELP),
    db: str | None = db_option(),
    token_cap: int = typer.Option(2048, min=1, help="Token cap for the raw-trajectory context."),
    temperature: float = typer.Option(DEFAULT_SAMPLING.temperature, help=TEMPERATURE_HELP),
    max_new_tokens: int = typer.Option(DEFAULT_SAMPLING.max_new_tokens, min=1, help=MAX_NEW_TOKENS_HELP),
    action_mode: str = typer.Option(
        "text", help="text (OEL's free-text protocol) or scored (the admissible commands are scored)."
    ),
    ray: str | None = typer.Option(None, "--ray", help=RAY_HELP),
    workers: int = typer.Option(2, min=1, help=WORKERS_HELP),
) -> None:
    """Play the held-out split under one condition; print the pass rate over distinct tasks, step accuracy
    (grid games) and tokens per episode."""
    import gymnasium
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    import envs
    from agent.backends import REMOTE_BACKENDS, backend_options, make_policy
    from agent.cli_errors import errors_as_lines
    from agent.extractor import policy_token_counter
    from agent.forms import make_form
    from agent.model import resolve_model_path
    from agent.play import PlayError, resolve_knowledge
    from agent.ray_pool import PolicySpec, RaySettings, RolloutPool
    from memory.knowledge.generator import approx_token_count
    from memory.knowledge.raw import build_raw_version
    from memory.stats import format_task_rate
    from memory.store import ExperienceStore
    from oel.evaluation import EvalConfig, evaluate

    console = table_console()
    with errors_as_lines():
        if env not in gymnasium.registry:
            known = ", ".join(spec.env_id for spec in envs.ENVIRONMENTS)
            raise PlayError(f"unknown environment {env!r}; registered: {known}")
        sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
        config = EvalConfig(
            env_id=env, env_kwargs=env_options(env_kwargs), split=split, episodes=episodes, batch=batch,
            seed=seed, sampling=sampling, action_mode=action_mode,
        )  # fmt: skip
        options = backend_options(backend, base_url)
        with ExperienceStore.open(db) as store, ExitStack() as stack:
            run_id = store.ensure_run(run)
            pool = None
            if ray is not None:
                pool = stack.enter_context(
                    RolloutPool(RaySettings(ray, workers), store, PolicySpec(backend, options))
                )
            with console.status("loading the policy ..."):
                path = model if backend in REMOTE_BACKENDS else str(resolve_model_path(model))
                policy = make_policy(backend, path, **options)
            make_form(policy, action_mode)  # refuse a mode the backend cannot play before anything runs
            checkpoint_id = store.checkpoint_for_path(str(path), run_id=run_id)
            counter = policy_token_counter(policy)
            if knowledge == "raw":
                version_id, text = build_raw_version(store, run_id, env_id=env, count_tokens=counter,
                                                     token_cap=token_cap)  # fmt: skip
            else:
                version_id, text = resolve_knowledge(store, run_id, knowledge)
            columns = (
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("pass {task.fields[rate]}"), TimeElapsedColumn(),
            )  # fmt: skip
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(escape(f"{env} [{split}] knowledge={knowledge}"), total=0, rate="-")
                result = evaluate(
                    lambda: policy, store, config, run_id=run_id, checkpoint_id=checkpoint_id,
                    knowledge_version_id=version_id,
                    on_start=lambda n: progress.update(task, total=n),
                    on_episode=lambda _done, summary: progress.update(
                        task, advance=1, rate=f"{summary.success_rate:.1%}"
                    ),
                    play=None if pool is None else pool.player(path),
                )  # fmt: skip
    table = Table(title=escape(f"{env} held-out, {policy.name}, {action_mode}"))
    columns = ["knowledge", "version", "knowledge tokens", "pass rate", "step acc", "gen tokens/ep",
               "prompt tokens/ep", "prompt computed/ep"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    table.add_row(
        knowledge, "" if version_id is None else str(version_id),
        str((counter or approx_token_count)(text) if text else 0),
        f"{100 * result['pass_rate']:.1f}%",
        "-" if result["step_accuracy"] is None else f"{result['step_accuracy']:.2f}",
        number(result["tokens_per_episode"]),
        number(result["prompt_tokens_per_episode"]), number(result["prompt_computed_per_episode"]),
    )  # fmt: skip
    console.print(table)
    rate = format_task_rate(result["task_score"], result["tasks"], result["wins"], result["episodes"])
    typer.echo(f"{split} pass rate, 95% interval over distinct tasks: {rate}")


def register(root: typer.Typer) -> None:
    """Attach `oel eval` to the root command."""
    root.command("eval")(evaluate_command)
