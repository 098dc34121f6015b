"""An environment id and its options checked before a long job starts, and the errors a person can fix.

`check_env(env_id, env_kwargs)` refuses an id that is not registered and makes
the environment once with the options, then closes it: making one generates or
plays nothing (TextWorld generates a game at its first reset), so an unknown
option, a bad value or a damaged game file is refused in one line before a
model loads, not minutes into a run.

`ENV_ERRORS` are the exceptions environments raise for input a person can fix:
bad options (`GridOptionsError`, `TextWorldOptionError`, `BabyAIOptionsError`, `BFCLError`: also
a missing bfcl-eval package or damaged BFCL data, `ScienceWorldError`: also no Java), an unknown split, a
TextWorld game file that is missing, damaged or will not load
(`GameFileError`), a game TextWorld cannot generate (`GameGenerationError`),
and `EnvConfigError` from `check_env`. Commands report them as one `error:`
line (`agent.cli_errors`).
"""

from __future__ import annotations

from typing import Any

import gymnasium

from envs.babyai import BabyAIOptionsError
from envs.bfcl import BFCLError
from envs.grid.base import GridOptionsError
from envs.registry import ENVIRONMENTS, register_all
from envs.scienceworld.options import ScienceWorldError
from envs.splits import SplitError
from envs.tw.games import GameFileError, GameGenerationError
from envs.tw.options import TextWorldOptionError


class EnvConfigError(ValueError):
    """An environment id that is not registered, or options it cannot be made with."""


ENV_ERRORS: tuple[type[Exception], ...] = (
    EnvConfigError, GridOptionsError, TextWorldOptionError, SplitError, GameFileError, GameGenerationError,
    BabyAIOptionsError, BFCLError, ScienceWorldError,
)  # fmt: skip
"""What environments raise for input a person can fix; a command reports each as one line."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def check_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
    """Raise EnvConfigError unless `env_id` is registered and can be made with `env_kwargs`.

    `split` is not an option here: whoever plays the environment chooses it (train, val or test).
    """
    register_all()
    if env_id not in gymnasium.registry:
        known = ", ".join(spec.env_id for spec in ENVIRONMENTS)
        raise EnvConfigError(f"unknown environment {env_id!r}; registered: {known}")
    kwargs = dict(env_kwargs or {})
    if "split" in kwargs:
        raise EnvConfigError(
            f"env_kwargs of {env_id} name a split ({kwargs['split']!r}); the split is chosen by what plays "
            "the environment (train for collection and training, test for evaluation), not by its options"
        )
    try:
        env = gymnasium.make(env_id, **kwargs)
    except Exception as exc:  # an env may raise anything for options it does not take
        raise EnvConfigError(f"cannot make {env_id} with env_kwargs {kwargs}: {_first_line(exc)}") from None
    env.close()
