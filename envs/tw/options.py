"""What a TextWorld game is made of: generation options, splits and the seed-to-game map.

Two kinds of game, both made by TextWorld's own generator:

* ``cooking``: the First TextWorld Problem cooking challenge (``tw-cooking``);
  its options are TextWorld's skill settings (recipe size, rooms, opening,
  cutting, cooking, limited inventory).
* ``quest``: a custom world of ``world_size`` rooms and a quest of
  ``quest_length`` actions, as ``tw-make custom`` builds.

How a seed maps to a game (the one rule the rest of the package follows):
a split holds ``pool_size`` games, numbered by an *index*; ``reset(seed=s)``
plays index ``s % pool_size``; index ``i`` is made with TextWorld generator
seed ``3*i`` on ``train``, ``3*i + 1`` on ``val`` and ``3*i + 2`` on ``test``.
The three residues never meet, so the splits never share a generated game. For
cooking, the split is also passed to TextWorld's own food split (``train``,
``valid``, ``test``), so validation and held-out games use foods and
preparations that training games never show.

Games are cached under a key that hashes (kind, options, TextWorld version); this
module holds no TextWorld import, so `oel --help` and option checks stay fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Kind = Literal["cooking", "quest"]
KINDS: tuple[str, ...] = ("cooking", "quest")
SPLITS: tuple[str, ...] = ("train", "val", "test")
COOKING_FOOD_SPLIT = {"train": "train", "val": "valid", "test": "test"}
"""Our split -> the food split TextWorld's cooking generator knows it by."""


class TextWorldOptionError(ValueError):
    """An unknown kind, split or option, or an impossible option value."""


@dataclass(frozen=True)
class CookingOptions:
    """Skill settings of TextWorld's cooking challenge (`tw-make tw-cooking`)."""

    recipe: int = 1
    """Number of ingredients in the recipe (1 to 5)."""
    take: int = 1
    """How many of the ingredients must be found and taken (0 to `recipe`)."""
    go: int = 1
    """Number of rooms: 1, 6, 9 or 12."""
    open: bool = False
    """Whether containers and doors have to be opened."""
    cook: bool = False
    """Whether some ingredients have to be cooked (roasted, fried, grilled)."""
    cut: bool = False
    """Whether some ingredients have to be cut (sliced, diced, chopped)."""
    drop: bool = False
    """Whether the inventory is limited, so that items have to be dropped."""

    def validate(self) -> None:
        """Raise TextWorldOptionError when TextWorld could not build such a game."""
        if not 1 <= self.recipe <= 5:
            raise TextWorldOptionError(f"cooking option recipe={self.recipe}: must be between 1 and 5")
        if not 0 <= self.take <= self.recipe:
            raise TextWorldOptionError(
                f"cooking option take={self.take}: must be between 0 and recipe={self.recipe}"
            )
        if self.go not in (1, 6, 9, 12):
            raise TextWorldOptionError(f"cooking option go={self.go}: must be 1, 6, 9 or 12")


@dataclass(frozen=True)
class QuestOptions:
    """A custom TextWorld world and quest (`tw-make custom`)."""

    world_size: int = 5
    """Number of rooms in the world."""
    nb_objects: int = 10
    """Minimum number of objects in the world."""
    quest_length: int = 3
    """Number of actions the winning quest needs."""
    quest_breadth: int = 1
    """Number of sub-quests the quest is made of."""

    def validate(self) -> None:
        """Raise TextWorldOptionError when TextWorld could not build such a game."""
        for name in ("world_size", "quest_length", "quest_breadth"):
            if getattr(self, name) < 1:
                raise TextWorldOptionError(f"quest option {name}={getattr(self, name)}: must be at least 1")
        if self.nb_objects < 0:
            raise TextWorldOptionError(f"quest option nb_objects={self.nb_objects}: must be at least 0")


OPTION_CLASSES: dict[str, type[CookingOptions] | type[QuestOptions]] = {
    "cooking": CookingOptions,
    "quest": QuestOptions,
}


def make_options(kind: str, **values: Any) -> CookingOptions | QuestOptions:
    """Build and validate the options of `kind` from keyword values (unknown names are an error)."""
    check_kind(kind)
    cls = OPTION_CLASSES[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TextWorldOptionError(
            f"unknown {kind} option(s) {unknown}; the {kind} options are {sorted(known)}"
        )
    options = cls(**values)
    options.validate()
    return options


def parse_option(kind: str, text: str) -> tuple[str, Any]:
    """Parse one `name=value` from the command line into a typed (name, value) pair."""
    check_kind(kind)
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    types = {f.name: f.type for f in fields(OPTION_CLASSES[kind])}
    if not sep or name not in types:
        raise TextWorldOptionError(f"option {text!r}: expected NAME=VALUE with NAME one of {sorted(types)}")
    raw = raw.strip().lower()
    if types[name] in (bool, "bool"):
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise TextWorldOptionError(f"option {text!r}: {name} takes true or false")
        return name, raw in ("true", "1", "yes")
    try:
        return name, int(raw)
    except ValueError:
        raise TextWorldOptionError(f"option {text!r}: {name} takes an integer") from None


def check_kind(kind: str) -> None:
    """Raise TextWorldOptionError unless `kind` is a known game kind."""
    if kind not in KINDS:
        raise TextWorldOptionError(f"unknown TextWorld game kind {kind!r}; choose one of {list(KINDS)}")


def check_split(split: str) -> None:
    """Raise TextWorldOptionError unless `split` is train, val or test."""
    if split not in SPLITS:
        raise TextWorldOptionError(f"unknown split {split!r}; choose one of {list(SPLITS)}")


def generator_seed(split: str, index: int) -> int:
    """TextWorld generator seed of game `index` of `split`: 3*index plus 0 (train), 1 (val) or 2 (test)."""
    check_split(split)
    if index < 0:
        raise TextWorldOptionError(f"game index {index} must be non-negative")
    return 3 * index + SPLITS.index(split)


def options_key(kind: str, options: CookingOptions | QuestOptions, split: str, tw_version: str) -> str:
    """Short stable name of a game family: the kind plus a hash of everything that shapes its games.

    The cooking split is part of the key because TextWorld's cooking generator
    draws different foods per split; a quest's split only changes its seeds.
    """
    described: dict[str, Any] = {"kind": kind, "textworld": tw_version, **asdict(options)}
    if kind == "cooking":
        described["food_split"] = COOKING_FOOD_SPLIT[split]
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:10]
    return f"{kind}-{digest}"
