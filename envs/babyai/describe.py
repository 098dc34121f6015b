"""The text a BabyAI player reads: what its 7x7 view holds, and what its last command did.

BabyAI's agent sees a 7x7 square ahead of it (itself at the middle of the back
row), minus what walls and closed doors hide. `envs.babyai.env` turns that view
into a `View`: every visible thing keyed by its egocentric offset (steps forward,
steps right; negative right is left), the carried object and the agent's cell.
This module only writes text from a View, so it needs no minigrid import and
its tests need no level.

The description follows BabyAI-Text (GLAM, Carta et al. 2023) in naming each
object by colour, kind and door state at an egocentric offset, and in naming
the nearest wall straight ahead, left and right. It differs in five ways,
each aimed at a small model reading it:

* offsets read forward first ("a red ball 2 steps forward and 1 step left",
  GLAM: "1 step left and 2 steps forward"), nearest object first, all on one
  "You see:" line, with the walls on a line of their own;
* an "In front of you:" line names the one cell that `go forward`, `pick up`,
  `drop` and `toggle` act on, since "1 step forward" is easy to misread;
* the carried object is stated every step ("You carry: nothing.");
* the mission is repeated every step;
* a first line says what the last command did ("You picked up the red ball.",
  "Nothing happened: the blue door is locked."), which GLAM leaves to the
  agent to infer by comparing two descriptions.

Nothing states a rule the agent could not see happen (what opens a locked
door, how close "go to" means): outcomes are reported, not explained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Offset = tuple[int, int]
"""(steps forward, steps right) from the agent; a negative right is to the left."""
FRONT: Offset = (1, 0)
"""The cell the agent faces."""


@dataclass(frozen=True)
class Cell:
    """One visible non-empty cell, copied out of the level so later steps cannot change it."""

    kind: str
    """minigrid's object type: 'wall', 'door', 'key', 'ball', 'box', 'goal', ..."""
    color: str
    """minigrid's colour name."""
    state: str = ""
    """For doors: 'open', 'closed' or 'locked'; empty otherwise."""

    def name(self, article: str = "a", with_state: bool = True) -> str:
        """'a closed blue door', 'the red ball', 'a wall' (walls have no colour worth naming)."""
        if self.kind == "wall":
            return f"{article} wall"
        words = [self.state] if with_state and self.state else []
        phrase = " ".join([*words, self.color, self.kind])
        if article == "a" and phrase[0] in "aeiou":
            article = "an"
        return f"{article} {phrase}"


@dataclass(frozen=True)
class View:
    """What the agent perceives at one moment."""

    things: Mapping[Offset, Cell] = field(default_factory=dict)
    """Visible non-empty cells by offset; the agent's own cell is not among them."""
    carried: Cell | None = None
    """The object the agent holds."""
    position: tuple[int, int] = (0, 0)
    """The agent's cell in the level (only compared, never shown: the agent has no map)."""

    def front(self) -> Cell | None:
        """The cell the agent faces, or None when it is empty floor."""
        return self.things.get(FRONT)


def _steps(count: int, direction: str) -> str:
    return f"{count} step{'s' if count != 1 else ''} {direction}"


def offset_phrase(offset: Offset) -> str:
    """'2 steps forward and 1 step left', '3 steps forward', '1 step right'."""
    forward, right = offset
    parts = [_steps(forward, "forward")] if forward else []
    if right:
        parts.append(_steps(abs(right), "right" if right > 0 else "left"))
    return " and ".join(parts)


def _nearest_object_first(item: tuple[Offset, Cell]) -> tuple[int, int, int]:
    (forward, right), _ = item
    return abs(forward) + abs(right), forward, right


def seen_line(view: View) -> str:
    """'You see: a red ball 2 steps forward and 1 step left; ...' for every visible object but walls."""
    objects = sorted(((o, c) for o, c in view.things.items() if c.kind != "wall"), key=_nearest_object_first)
    if not objects:
        return "You see no objects."
    return "You see: " + "; ".join(f"{cell.name()} {offset_phrase(o)}" for o, cell in objects) + "."


def _straight_line(offset: Offset) -> tuple[str, int] | None:
    """('forward' | 'left' | 'right', distance) for a cell straight ahead or beside the agent, else None."""
    forward, right = offset
    if right == 0 and forward > 0:
        return "forward", forward
    if forward == 0 and right != 0:
        return ("right" if right > 0 else "left"), abs(right)
    return None


def wall_line(view: View) -> str:
    """'Walls: 3 steps forward, 1 step left.': the nearest visible wall in each straight line."""
    nearest: dict[str, int] = {}
    for offset, cell in view.things.items():
        line = _straight_line(offset) if cell.kind == "wall" else None
        if line is not None:
            nearest[line[0]] = min(line[1], nearest.get(line[0], line[1]))
    found = [_steps(nearest[label], label) for label in ("forward", "left", "right") if label in nearest]
    if not found:
        return "Walls: none in sight straight ahead, left or right."
    return "Walls: " + ", ".join(found) + "."


def describe(view: View, mission: str) -> list[str]:
    """The lines that describe the agent's situation: mission, objects, walls, front cell, carried object."""
    front = view.front()
    carried = view.carried
    return [
        f"Your mission: {mission}",
        seen_line(view),
        wall_line(view),
        f"In front of you: {front.name() if front else 'empty floor'}.",
        f"You carry: {carried.name() if carried else 'nothing'}.",
    ]


def outcome_line(command: str, before: View, after: View) -> str:
    """One line saying what `command` (one of the six BabyAI commands) did, from the views around it."""
    front, carried = before.front(), before.carried
    if command in ("turn left", "turn right"):
        return f"You turned {command.split()[1]}."
    if command == "go forward":
        if after.position != before.position:
            return "You moved forward."
        blocker = front.name() if front else "something"
        return f"You could not move forward: {blocker} is in front of you."
    if command == "pick up":
        if carried is None and after.carried is not None:
            return f"You picked up {after.carried.name('the')}."
        if carried is not None:
            return f"Nothing happened: you already carry {carried.name('the')}."
        if front is None:
            return "Nothing happened: there is nothing in front of you to pick up."
        return f"Nothing happened: you cannot pick up {front.name('the')}."
    if command == "drop":
        if carried is not None and after.carried is None:
            return f"You dropped {carried.name('the')} in front of you."
        if carried is None:
            return "Nothing happened: you carry nothing."
        blocker = front.name() if front else "something"
        return f"Nothing happened: {blocker} is in front of you."
    return _toggle_outcome(front, after.front())


def _toggle_outcome(front: Cell | None, now: Cell | None) -> str:
    if front is None:
        return "Nothing happened: there is nothing in front of you to toggle."
    name = front.name("the", with_state=False)
    if front.kind == "door" and now is not None and now.kind == "door":
        if front.state == now.state:
            return f"Nothing happened: {name} is {front.state}."
        verb = {"open": "closed", "closed": "opened"}.get(front.state, "unlocked and opened")
        return f"You {verb} {name}."
    if front.kind == "box" and now != front:
        return f"You opened {name}: " + (f"it held {now.name()}." if now else "it was empty.")
    return f"Nothing happened when you toggled {name}."
