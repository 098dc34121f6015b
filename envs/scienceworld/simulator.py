"""ScienceWorld's simulator: a JVM driven through py4j, made deterministic, started and stopped cleanly.

The `scienceworld` package launches its bundled jar with py4j (the `java` on
PATH) and wraps it in a Python object. These things make that fit an
environment's contract:

* Determinism. ScienceWorld seeds its random generator with the variation,
  but keeps objects in hash sets keyed by Java identity hash codes, which
  differ from process to process and from load to load. Iteration order then
  decides the order objects are listed in ("a wood cup (containing red
  paint)" before or after the blue one), the names the valid-command list
  gives to look-alike objects, and which bee draws which random move: the
  same variation and commands gave different observations. HotSpot's
  experimental `-XX:hashCode=2` makes every identity hash the same constant,
  so iteration follows insertion order and a variation plus its commands
  always give the same text (measured: random walks and gold paths on six
  tasks replay identically across processes and reloads, at about the same
  speed).
* Memory. With the JVM's defaults each simulator grew to about 900 MB; the
  serial collector and a 512 MB heap keep it near 350 MB (a 256 MB heap ran
  2,500 steps without growing past 345 MB), which matters when a rollout
  steps a batch of environments, one JVM each.
* The package passes no JVM options, so both go in through the standard
  JAVA_TOOL_OPTIONS variable, set only while the JVM is launched.
* Java is looked up before launching, and any failure to launch (no java, a
  java that dies at once, a gateway that never answers) becomes one
  ScienceWorldError line, never a py4j stack trace. The package's `__del__`
  would print an AttributeError traceback for a simulator that never started,
  so the wrapper used here skips it then.
* `stop` closes the gateway through the package, then waits for the JVM to
  exit and kills it if it does not, so no java process outlives its env.
* `load_task` turns the package's ValueError for a bad simplification string
  into a ScienceWorldError.

This module imports `scienceworld`; `envs.scienceworld.env` imports it only
after `options.task_names` has found the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import scienceworld
from py4j.protocol import Py4JError

from envs.environ import environ_set
from envs.scienceworld.options import ScienceWorldError

NO_JAVA = (
    "ScienceWorld needs a Java runtime (java not found on PATH); install one, "
    "e.g. `apt-get install default-jre-headless`"
)
JAVA_OPTIONS = "-XX:+UnlockExperimentalVMOptions -XX:hashCode=2 -XX:+UseSerialGC -Xmx512m"
"""Every Java identity hash code is the constant 1, and a small serially collected heap (module docstring)."""
NO_MOVE_LIMIT = 2**62
"""The package ends an episode past its own move limit; the environment counts steps itself instead."""
STOP_WAIT_S = 5.0


class _Simulator(scienceworld.ScienceWorldEnv):
    """The package's wrapper, whose `__del__` closes only a simulator that started."""

    def __del__(self) -> None:
        if hasattr(self, "_gateway"):
            super().__del__()


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


@contextlib.contextmanager
def _java_tool_options(options: str) -> Iterator[None]:
    """JAVA_TOOL_OPTIONS with `options` appended (they win over earlier ones), restored afterwards."""
    before = os.environ.get("JAVA_TOOL_OPTIONS")
    with environ_set("JAVA_TOOL_OPTIONS", f"{before} {options}" if before else options):
        yield


def start() -> scienceworld.ScienceWorldEnv:
    """Launch a deterministic, lean JVM and return the package's wrapper around it, with no task loaded."""
    java = shutil.which("java")
    if java is None:
        raise ScienceWorldError(NO_JAVA)
    try:
        with _java_tool_options(JAVA_OPTIONS):
            return _Simulator("", envStepLimit=NO_MOVE_LIMIT)
    except Exception as err:  # py4j and subprocess raise whatever a failed launch hits
        raise ScienceWorldError(
            f"ScienceWorld's simulator did not start with {java}: {_one_line(err)}"
        ) from None


def java_process(sim: scienceworld.ScienceWorldEnv) -> subprocess.Popen:
    """The JVM process behind `sim` (py4j's handle; the package keeps no public one)."""
    return sim._gateway.java_process


def stop(sim: scienceworld.ScienceWorldEnv) -> None:
    """Shut the gateway down and make sure the JVM has exited."""
    process = java_process(sim)
    with contextlib.suppress(Py4JError, OSError):  # a JVM that already died cannot be asked to stop
        sim.close()
    try:
        process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load_task(
    sim: scienceworld.ScienceWorldEnv, task: str, variation: int, simplification: str, gold: bool = False
) -> None:
    """Load one variation of a task (and its gold action sequence when `gold`); bad options raise one line."""
    try:
        sim.load(task, variation, simplification, generateGoldPath=gold)
    except ValueError as err:
        reason = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise ScienceWorldError(f"task {task!r}, simplification {simplification!r}: {reason}") from None
