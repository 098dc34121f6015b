"""The `oel` command: gathers each package's sub-commands.

It lives in `distill` because that is the only layer allowed to import all the
others. Each package exposes `register(root)` in its own `cli` module; heavy
imports (torch, transformers) happen inside the commands, so `oel --help` is fast.
Importing `distill.ternary` (torch-free) registers the packed-student model
loader, so every command that takes a model path loads packed students too.
"""

from __future__ import annotations

import typer

import distill.ternary  # noqa: F401  registers the packed-student loader with agent.model
from agent import cli as agent_cli
from distill import consolidate_cli, loop_cli
from envs import cli as envs_cli
from memory import cli as memory_cli

app = typer.Typer(
    help="Online experiential learning of LLM agents: play, log, extract knowledge, consolidate, redeploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for _package_cli in (envs_cli, memory_cli, agent_cli, consolidate_cli, loop_cli):
    _package_cli.register(app)


def main() -> None:
    """Entry point of the `oel` console script."""
    app()
