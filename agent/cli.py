"""`oel play ...`: deploy a policy on environments and log every step in the store."""

from __future__ import annotations

from typing import Any

import typer

from agent import knowledge_cli
from agent.backends import backend_options
from agent.policy import DEFAULT_SAMPLING
from envs.command_errors import reported
from memory.cli import db_option

BACKEND_HELP = (
    "Policy backend (agent.backends): hf, vllm, langchain, openai (--base-url, --model NAME), or reference "
    "(--model solver, random[:moves] or blind:moves: the grid games' ceiling and floors)."
)
BASE_URL_HELP = "openai backend: the server's base URL, e.g. http://127.0.0.1:8000/v1 (vLLM's OpenAI server)."
RAY_HELP = (
    "Play on Ray rollout workers: local, auto, ray://HOST:10001 or HOST:6379 (needs a PostgreSQL --db)."
)
WORKERS_HELP = "Ray rollout workers (with --ray)."
TEMPERATURE_HELP = "Sampling temperature (OEL: 0.7; 0 = greedy)."
MAX_NEW_TOKENS_HELP = "Longest reply per step, in tokens."
ENV_KWARGS_HELP = "Environment options as a JSON object, e.g. '{\"neighbours\": true}' (see `oel envs list`)."


def table_console() -> Any:
    """A rich Console for result tables: the terminal's width, or 160 columns when the output goes to a
    file or a pipe (rich's default of 80 there wraps every cell of a round's table)."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def env_options(text: str) -> dict:
    """The --env-kwargs JSON object; typer.BadParameter naming the problem otherwise."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--env-kwargs takes a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"--env-kwargs takes a JSON object, got {value!r}")
    return value


def play(
    env: str = typer.Option("oel/FrozenLake-v0", help="Environment id (see `oel envs list`)."),
    episodes: int = typer.Option(8, min=1, help="How many episodes to play."),
    split: str = typer.Option(
        "train", help="Task split: train, val (for choosing settings), or test (held-out evaluation)."
    ),
    env_kwargs: str = typer.Option("{}", help=ENV_KWARGS_HELP),
    batch: int = typer.Option(
        8, min=1, help="Environments stepped together; one batched model call serves them."
    ),
    seed: int = typer.Option(0, help="Episode i plays seed SEED+i (on test: the i-th held-out task)."),
    model: str | None = typer.Option(
        None, help="Local HF model folder (default: embedded SmolLM2-135M-Instruct)."
    ),
    backend: str = typer.Option("hf", help=BACKEND_HELP),
    base_url: str | None = typer.Option(None, help=BASE_URL_HELP),
    knowledge: str = typer.Option(
        "none", help="Knowledge in context: none, latest, or a knowledge version id."
    ),
    run: str = typer.Option("default", help="Run name the episodes are filed under."),
    round: int | None = typer.Option(None, "--round", help="Round index the episodes belong to."),
    db: str | None = db_option(),
    temperature: float = typer.Option(DEFAULT_SAMPLING.temperature, help=TEMPERATURE_HELP),
    top_p: float = typer.Option(DEFAULT_SAMPLING.top_p, help="Nucleus sampling threshold (OEL: 0.8)."),
    top_k: int = typer.Option(DEFAULT_SAMPLING.top_k, help="Top-k sampling (OEL: 20; 0 = off)."),
    max_new_tokens: int = typer.Option(DEFAULT_SAMPLING.max_new_tokens, min=1, help=MAX_NEW_TOKENS_HELP),
    action_mode: str = typer.Option(
        "text",
        help="text: free-text reply, bracketed action parsed (OEL); scored: the game's admissible "
        "commands are scored and one is sampled at --temperature (falls back to text where none are listed).",
    ),  # fmt: skip
    follow: bool = typer.Option(
        False,
        help="Serve the run's deployed checkpoint (set by `oel loop`), checking for a new one before "
        "each wave of BATCH episodes; a deployed agent for `oel loop --watch`.",
    ),  # fmt: skip
    ray: str | None = typer.Option(None, "--ray", help=RAY_HELP),
    workers: int = typer.Option(2, min=1, help=WORKERS_HELP),
) -> None:
    """Play episodes with a policy, one batched model call per step, and store every step."""
    from agent.play import PlayError, play_and_report
    from agent.ray_pool import RaySettings

    with reported(PlayError):
        options = env_options(env_kwargs)
        play_and_report(
            env=env, episodes=episodes, split=split, batch=batch, seed=seed, model=model, backend=backend,
            knowledge=knowledge, run=run, round_index=round, db=db, temperature=temperature, top_p=top_p,
            top_k=top_k, max_new_tokens=max_new_tokens, follow=follow, action_mode=action_mode,
            ray=RaySettings(address=ray, workers=workers), backend_options=backend_options(backend, base_url),
            env_kwargs=options,
        )  # fmt: skip


def convert_model() -> None:
    """Convert the embedded SmolLM2 GGUF into a cached Hugging Face folder (once), and print its path."""
    from agent.cli_errors import errors_as_lines
    from agent.model import default_model_path

    with errors_as_lines():
        typer.echo(str(default_model_path()))


def register(root: typer.Typer) -> None:
    """Attach this package's commands to the root `oel` command."""
    root.command("play")(play)
    root.command("convert-model")(convert_model)
    knowledge_cli.register(root)
