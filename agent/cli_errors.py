"""The failures a user can fix that every `oel` command from this floor up reports as one `error: ...` line.

The line itself (and exit code 1, never a traceback) is `envs.command_errors.fail`,
written once on the lowest floor so that `oel envs` and `oel store` report
the same way; this module adds what only this floor can name: `CommandError`
for a command's own refusals, and `errors_as_lines()`, which reports every
known user-facing failure of the floors up to `agent` (the store, knowledge,
models, policies, rollouts, Ray, environments).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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
    from envs.command_errors import reported
    from memory.errors import StoreError
    from memory.knowledge.errors import KnowledgeError

    with reported(
        CommandError,
        KnowledgeError,
        StoreError,
        PolicyError,
        ModelLoadError,
        PlayError,
        RayError,
        *ENV_ERRORS,
    ):
        yield
