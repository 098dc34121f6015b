"""The `oel` command: the root that gathers each package's sub-commands.

Each package exposes `register(root)` in its own `cli` module; heavy imports
(torch, transformers) happen inside the commands, so `oel --help` is fast.
`oel consolidate` is the one command whose flags are generated from the
method modules, which import torch, so it is attached as a lazy click command
that is built only when it runs (`LazyCommand`).

Importing `distill.ternary` (torch-free) registers the packed-student model
loader, so every command that takes a model path loads packed students too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import typer

import distill.ternary  # noqa: F401  registers the packed-student loader with agent.model
from agent import cli as agent_cli
from distill import cli as distill_cli
from envs import cli as envs_cli
from memory import cli as memory_cli
from oel import eval_cli, loop_cli, ui_cli

app = typer.Typer(
    help="Online experiential learning of LLM agents: play, log, extract knowledge, consolidate, redeploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for _package_cli in (envs_cli, memory_cli, agent_cli, eval_cli, loop_cli, ui_cli):
    _package_cli.register(app)


class LazyCommand(click.Command):
    """A sub-command that is built on first use; until then only its name and one-line help exist."""

    def __init__(self, name: str, short_help: str, build: Callable[[], click.Command]) -> None:
        super().__init__(name, short_help=short_help, help=short_help)
        self._build = build
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            self._real = self._build()
            self._real.name = self.name
        return self._real

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        return self.real().make_context(info_name, args, parent=parent, **extra)


def command() -> click.Group:
    """The whole `oel` click group (typer's root plus the lazy `consolidate`)."""
    group = typer.main.get_command(app)
    group.add_command(LazyCommand("consolidate", distill_cli.SHORT_HELP, distill_cli.build_command))
    return group


def main() -> None:
    """Entry point of the `oel` console script."""
    command()()
