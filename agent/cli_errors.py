"""How every `oel` command reports a problem the user can fix: one `error: ...` line and exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


class CommandError(Exception):
    """A problem to report as one `error:` line."""


@contextmanager
def errors_as_lines() -> Iterator[None]:
    """Turn every known user-facing failure into one `error: ...` line and exit code 1, never a traceback."""
    from agent.model import ModelLoadError
    from agent.play import PlayError
    from agent.policy import PolicyError
    from agent.ray_pool import RayError
    from envs.checks import ENV_ERRORS
    from memory.errors import StoreError
    from memory.knowledge.errors import KnowledgeError

    try:
        yield
    except (
        CommandError,
        KnowledgeError,
        StoreError,
        PolicyError,
        ModelLoadError,
        PlayError,
        RayError,
        *ENV_ERRORS,
    ) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
