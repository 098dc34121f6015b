"""How every `oel` command reports a problem the user can fix: one `error: ...` line and exit code 1.

Never a traceback: `fail(message)` writes the line, and `reported(*kinds)`
turns the given exception types raised in its body into it. It lives here, on
the lowest floor, because commands on every floor report this way and a floor
imports only the ones below it (`envs` imports nothing of ours). Commands call
these directly with the failures they expect, or through
`agent.cli_errors.errors_as_lines`, which names every known failure of the
floors up to `agent`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    """Report `message` as one `error:` line on stderr and exit with code 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1) from None


@contextmanager
def reported(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn an exception of one of `kinds` raised in the body into one `error:` line and exit code 1."""
    try:
        yield
    except kinds as exc:
        fail(str(exc))
