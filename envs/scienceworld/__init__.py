"""ScienceWorld tasks (the `scienceworld` package's simulator, a JVM) as gymnasium text environments.

`envs.scienceworld.env` holds the environment; `envs.scienceworld.options`
the task names, option checks and the one error they raise (importable
without Java or the package); `envs.scienceworld.simulator` starts, loads and
stops the JVM. Only `options` is imported here, so importing this package
needs neither Java nor `scienceworld`.
"""

from envs.scienceworld.options import ScienceWorldError, task_names

__all__ = ["ScienceWorldError", "task_names"]
