"""ScienceWorld options a person chooses, checked before the simulator starts, and the one error they raise.

The task names come from the `scienceworld` package's own task table (its
tasks.json), so a name is refused in one line without starting Java. The
package is an optional dependency: when it is missing, that too is one line
here, at make time. The simplification string is checked by the simulator
itself once it runs (`envs.scienceworld.simulator.load_task`), since the
simulator owns that list.
"""

from __future__ import annotations

SPLIT_TO_SCIENCEWORLD = {"train": "train", "val": "dev", "test": "test"}
"""Our split -> ScienceWorld's own variation split of every task."""
MISSING_PACKAGE = (
    "ScienceWorld environments need the `scienceworld` package: `pip install scienceworld==1.2.3`"
)


class ScienceWorldError(ValueError):
    """An option ScienceWorld cannot play (unknown task, bad simplification, max_steps < 1), or no Java."""


def task_names() -> tuple[str, ...]:
    """ScienceWorld's 30 task names ("boil", "find-living-thing", ...), in the package's order."""
    try:
        from scienceworld.constants import TASKS
    except ImportError:
        raise ScienceWorldError(MISSING_PACKAGE) from None
    return tuple(task["task_name"] for task in TASKS)


def check_task(task: str) -> str:
    """Return `task` if ScienceWorld has it, else raise ScienceWorldError naming a few valid ones."""
    names = task_names()
    if task not in names:
        raise ScienceWorldError(
            f"unknown ScienceWorld task {task!r}; choose one of its {len(names)} tasks, e.g. "
            f"{', '.join(names[:3])}, find-living-thing (envs.scienceworld.options.task_names() lists all)"
        )
    return task


def check_max_steps(max_steps: int) -> int:
    """Return `max_steps` if it allows at least one step, else raise ScienceWorldError."""
    if max_steps < 1:
        raise ScienceWorldError(f"max_steps must be at least 1, got {max_steps}")
    return max_steps
