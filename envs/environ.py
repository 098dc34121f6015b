"""One environment variable set for the duration of a block, then put back: what launching a tool needs.

TextWorld's Inform7 compiler writes into $HOME, so game generation points it
at a private folder (`envs.tw.games`); ScienceWorld's JVM takes its options
from $JAVA_TOOL_OPTIONS (`envs.scienceworld.simulator`). Both set a variable
only while they launch and restore it afterwards, including its absence.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def environ_set(name: str, value: str) -> Iterator[None]:
    """Set environment variable `name` to `value` inside the block; restore (or remove) it after."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved
