"""Interval estimates for pass rates: every reported rate comes with its number of tasks and a 95% interval.

The Wilson score interval, not the normal approximation: at the rates this
project sees (0 of 128, 3 of 128) the normal interval collapses to [0, 0] or
dips below zero, while Wilson's stays inside [0, 1] and is honest about how
little 0/128 rules out (up to 2.9%).

Intervals are taken over **distinct tasks**, not episodes: a greedy policy is
deterministic per task, so 128 episodes on 19 maps are at most 19
observations, and 12/128 may be two maps solved (2/19: [2.9%, 31.4%], not
[5.4%, 15.7%]). Each task counts once, with the mean outcome of its episodes
(0 or 1 for greedy play; a fraction for sampled play), and the Wilson
interval is computed on (sum of task means, number of tasks), which is the
exact Wilson interval when each task is 0 or 1.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for `successes` out of `n` (both 0.0 when n is 0).

    `successes` may be fractional: the sum of per-task mean outcomes (see the module docstring).
    """
    if n <= 0:
        return 0.0, 0.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def format_rate(successes: int, n: int) -> str:
    """'12.5% [7.8, 19.3] (16/128)': the rate, its 95% Wilson interval in points, and the counts."""
    low, high = wilson_interval(successes, n)
    rate = successes / n if n else 0.0
    return f"{100 * rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({successes}/{n})"


def format_task_rate(task_score: float, tasks: int, wins: int, episodes: int, unit: str = "tasks") -> str:
    """'10.5% [2.9, 31.4] (2/19 maps; 12/128 episodes)': the rate and interval over distinct tasks."""
    low, high = wilson_interval(task_score, tasks)
    rate = task_score / tasks if tasks else 0.0
    score = f"{task_score:g}" if float(task_score).is_integer() else f"{task_score:.1f}"
    return (
        f"{100 * rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] "
        f"({score}/{tasks} {unit}; {wins}/{episodes} episodes)"
    )
