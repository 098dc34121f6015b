"""The one list of this project's environments, registered with gymnasium.

Each entry pairs a gymnasium id with its entry point, a one-line
description, how its splits are kept apart and whether it lists commands, so
that `gymnasium.make(id)` and `oel envs list` read the same table. Importing `envs` registers them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium


@dataclass(frozen=True)
class EnvSpec:
    """One registered environment family."""

    env_id: str
    entry_point: str
    description: str
    splits: str
    """How train, val and test are kept apart (by task where the space allows, else by seed only)."""
    commands: bool
    """Whether the game lists its admissible commands (what scored actions need)."""
    kwargs: dict[str, Any] = field(default_factory=dict)


ENVIRONMENTS: list[EnvSpec] = [
    EnvSpec(
        "oel/FrozenLake-v0",
        "envs.grid.frozenlake:FrozenLakeEnv",
        "OEL FrozenLake: 3x3 ice, 2 holes, goal in the far corner, at most 5 moves; rules not told.",
        "by seed only: the 19 solvable maps are shared by all splits (OEL's protocol); "
        "split_by='layout' splits the maps (9 test)",
        True,
    ),
    EnvSpec(
        "oel/FrozenLake-4x4-v0",
        "envs.grid.frozenlake:FrozenLakeEnv",
        "FrozenLake 4x4, 3 holes, at most 7 moves: enough maps to measure transfer to unseen ones.",
        "by map: 334 solvable maps, 190 train / 36 val / 108 test, seed i of a split = its i-th map",
        True,
        {"size": 4, "holes": 3},
    ),
    EnvSpec(
        "oel/Sokoban-v0",
        "envs.grid.sokoban:SokobanEnv",
        "OEL Sokoban: 6x6 walled room, push the one box onto its target in at most 5 moves; rules not told.",
        "by layout (hash), hundreds of thousands of layouts",
        True,
    ),
    EnvSpec(
        "oel/TextWorld-Cooking-v0",
        "envs.tw.env:TextWorldEnv",
        "TextWorld cooking challenge games, generated offline and cached.",
        "by game (generator seed) and by TextWorld's food split",
        True,
        {"kind": "cooking"},
    ),
    EnvSpec(
        "oel/TextWorld-Quest-v0",
        "envs.tw.env:TextWorldEnv",
        "TextWorld custom quests of a given world size and quest length, generated offline and cached.",
        "by game (generator seed)",
        True,
        {"kind": "quest"},
    ),
    EnvSpec(
        "oel/ToolArith-v0",
        "envs.tools.tasks:ToolArithEnv",
        "Arithmetic questions answered through a LangChain calculator tool (ast-parsed, exact).",
        "by question (hash of the expression)",
        False,
    ),
    EnvSpec(
        "oel/BabyAI-GoToLocal-v0",
        "envs.babyai.env:BabyAITextEnv",
        "BabyAI-Text GoToLocal (minigrid): one 8x8 room, 8 objects, 'go to the red ball'; egocentric view.",
        "by instance: a hash of mission, full grid, agent cell and facing puts each instance in one split",
        True,
        {"level": "BabyAI-GoToLocal-v0"},
    ),
    EnvSpec(
        "oel/BabyAI-PickupLoc-v0",
        "envs.babyai.env:BabyAITextEnv",
        "BabyAI-Text PickupLoc (minigrid): one 8x8 room, pick up an object named by colour, kind or place.",
        "by instance (hash of mission and full layout)",
        True,
        {"level": "BabyAI-PickupLoc-v0"},
    ),
    EnvSpec(
        "oel/BabyAI-PutNextLocal-v0",
        "envs.babyai.env:BabyAITextEnv",
        "BabyAI-Text PutNextLocal (minigrid): one 8x8 room, put one object next to another.",
        "by instance (hash of mission and full layout)",
        True,
        {"level": "BabyAI-PutNextLocal-v0"},
    ),
    EnvSpec(
        "oel/BabyAI-OpenDoor-v0",
        "envs.babyai.env:BabyAITextEnv",
        "BabyAI-Text OpenDoor (minigrid): a room with four doors; open the one named by colour or place.",
        "by instance (hash of mission and full layout)",
        True,
        {"level": "BabyAI-OpenDoor-v0"},
    ),
    EnvSpec(
        "oel/ScienceWorld-v0",
        "envs.scienceworld.env:ScienceWorldEnv",
        "ScienceWorld's science tasks (default find-living-thing, 'easy' mode); score 0-100; needs Java.",
        "by task variation: ScienceWorld's own train/dev/test variations (find-living-thing 150/75/75), "
        "seed i of a split = its i-th variation",
        True,
    ),
    EnvSpec(
        "oel/BFCL-MultiTurn-v0",
        "envs.bfcl.env:BFCLMultiTurnEnv",
        "BFCL v4 multi-turn function calling (bfcl-eval's data and backends), judged as BFCL's checker does.",
        "by scenario number (hash), the same in all four categories: 110 train / 35 val / 55 test entries, "
        "seed i of a split = its i-th entry",
        False,
    ),
    EnvSpec(
        "oel/ToolLookup-v0",
        "envs.tools.tasks:ToolLookupEnv",
        "Questions about a per-seed SQLite staff and price database, answered through LangChain tools.",
        "by question (hash of question and answer)",
        False,
    ),
]


def register_all() -> None:
    """Register every entry of ENVIRONMENTS with gymnasium (idempotent)."""
    for spec in ENVIRONMENTS:
        if spec.env_id not in gymnasium.registry:
            gymnasium.register(id=spec.env_id, entry_point=spec.entry_point, kwargs=dict(spec.kwargs))
