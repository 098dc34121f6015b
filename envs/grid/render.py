"""Draw a grid of one-character symbols as text a language model reads well.

Symbols are separated by spaces so that each cell tends to be its own token,
and the player's position is also spelled out (1-based row and column), since
small models count cells poorly. `neighbour_line` names the symbol one move
away in each direction, for the same reason. Nothing here says what a symbol
means.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.grid.moves import DELTAS, Position

OUTSIDE = "edge"
"""What `neighbour_line` calls a cell off the grid."""


def render_grid(rows: Sequence[str]) -> str:
    """Rows of symbols, one line per row, symbols separated by single spaces."""
    return "\n".join(" ".join(row) for row in rows)


def position_line(player: Position) -> str:
    """'You are at row R, column C.' with 1-based coordinates."""
    return f"You are at row {player[0] + 1}, column {player[1] + 1}."


def neighbour_line(rows: Sequence[str], player: Position) -> str:
    """'One move away: up: edge, down: H, left: edge, right: .': the symbols next to the player."""
    parts = []
    for move, (dr, dc) in DELTAS.items():
        r, c = player[0] + dr, player[1] + dc
        inside = 0 <= r < len(rows) and 0 <= c < len(rows[r])
        parts.append(f"{move}: {rows[r][c] if inside else OUTSIDE}")
    return "One move away: " + ", ".join(parts)
