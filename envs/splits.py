"""Train, validation and test splits shared by the generated environment families.

Three splits, with one job each: `train` is what the agent learns from,
`val` is what settings, gates and teachers are chosen on, and `test` is read
for reporting only. Two mechanisms keep them apart, because task spaces differ
wildly in size:

* **By seed**, always. Each split owns a disjoint range of played seeds:
  `reset(seed=s)` plays seed `base + s mod SEED_SPAN`, with base 0 for
  `train`, VAL_SEED_BASE for `val` and TEST_SEED_BASE for `test`. This is all
  a tiny task space can have: FrozenLake 3x3 with 2 holes has only 19
  solvable maps, so as in OEL its splits share maps and differ only in
  seeds (envs/grid/frozenlake.py says so, and can split the maps themselves).
* **By task**, where the space is large. A stable hash of the task's key (its
  layout, or its question and answer) puts it in one split
  (`task_split`: about TEST_SHARE of the tasks in `test`, VAL_SHARE in
  `val`, the rest in `train`); generation rejection-samples until the drawn
  task belongs to the split asked for, so no two splits share a task.
  Families small enough to list (FrozenLake 4x4) list their tasks, split the
  list with the same hash, and play seed i as the i-th task of the split, so
  that seeds 0 .. n-1 visit every held-out task exactly once.

Hashing the key rather than keeping a list makes the split a pure function: no
file to ship, the same answer in every process, and new tasks fall on a side
without anyone deciding. The test share is large (30%) so that a family of a
few hundred tasks still holds out enough distinct tasks to measure transfer
(FrozenLake 4x4 with 3 holes: 334 solvable maps, 99 of them in `test`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

SPLITS = ("train", "val", "test")
SEED_SPAN = 2**30
"""Seeds of one split: played seeds of a split are base .. base + SEED_SPAN - 1."""
VAL_SEED_BASE = 2**30
TEST_SEED_BASE = 2**31
SEED_BASES = {"train": 0, "val": VAL_SEED_BASE, "test": TEST_SEED_BASE}
TEST_SHARE = 0.30
"""Share of a large task space held out for `test`."""
VAL_SHARE = 0.15
"""Share of a large task space held out for `val`."""
MAX_DRAWS = 100_000

T = TypeVar("T")


class SplitError(ValueError):
    """A split name that is not one of SPLITS, or a split no task can be drawn for."""


def check_split(split: str) -> str:
    """Return `split` if it names a split, else raise SplitError naming the choices."""
    if split not in SPLITS:
        raise SplitError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def episode_seed(split: str, seed: int) -> int:
    """Map a user's seed to the seed actually played on `split` (in that split's own range)."""
    return SEED_BASES[check_split(split)] + seed % SEED_SPAN


def split_of_seed(played: int) -> str:
    """The split whose range holds a played seed (the inverse of `episode_seed`'s range)."""
    for split in ("test", "val", "train"):
        if played >= SEED_BASES[split]:
            return split
    raise SplitError(f"seed {played} is negative; no split holds it")


def _unit_hash(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def task_split(key: str) -> str:
    """The split a task belongs to, from a stable hash of its key."""
    u = _unit_hash(key)
    if u < TEST_SHARE:
        return "test"
    return "val" if u < TEST_SHARE + VAL_SHARE else "train"


def draw_for_split(split: str, draw: Callable[[], T | None], key: Callable[[T], str] | None = None) -> T:
    """Call `draw` until it returns a task (None means: rejected, try again) that belongs to `split`.

    With `key` None only the seed separates the splits (for tiny task spaces);
    otherwise the task's key must hash to `split` (see task_split).
    """
    check_split(split)
    for _ in range(MAX_DRAWS):
        task = draw()
        if task is not None and (key is None or task_split(key(task)) == split):
            return task
    raise SplitError(
        f"no acceptable task for split {split!r} in {MAX_DRAWS} draws; the options leave too few valid tasks"
    )


def split_listing(tasks: Sequence[T], key: Callable[[T], str], split: str) -> list[T]:
    """The tasks of `split` from a full listing, in a fixed order (by hash), for seed i -> task i."""
    check_split(split)
    mine = [t for t in tasks if task_split(key(t)) == split]
    if not mine:
        raise SplitError(
            f"none of the {len(tasks)} tasks falls in split {split!r}; the task space is too small to split "
            "by task (split by seed instead)"
        )
    return sorted(mine, key=lambda t: _unit_hash("order:" + key(t)))
