"""Interval estimates for pass rates: every reported rate comes with its number of tasks and a 95% interval.

The Wilson score interval, not the normal approximation: at the rates this
project sees (0 of 128, 3 of 128) the normal interval collapses to [0, 0] or
dips below zero, while Wilson's stays inside [0, 1] and is honest about how
little 0/128 rules out (up to 2.9%).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for `successes` out of `n` (both 0.0 when n is 0)."""
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
