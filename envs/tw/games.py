"""Generate TextWorld games into the on-disk cache, and check game files before they are played.

Layout: ``cache_root()/textworld/<kind>-<options hash>/seed-<generator seed>/``
holds ``game.z8`` (the compiled Inform story), ``game.json`` (TextWorld's game
description, which its state tracking needs) and ``options.json`` (what made it,
for people). A game directory appears only by an atomic rename of a finished
temporary directory, so an interrupted generation leaves no half game behind,
and two processes racing for the same game both end up with one whole copy.

Generation calls TextWorld's Python API in-process (the knowledge base is then
loaded once per process rather than once per game, which `tw-make` would pay).
Inform7's compiler writes into ``$HOME/Inform``, so while it runs HOME points
at a private directory in the cache; this swaps a process-wide variable, so
generation is not meant to run from several threads of one process at once.

Game files are validated before TextWorld sees them: Jericho, TextWorld's
Z-machine, kills the whole Python process on a damaged story file rather than
raising, so a truncated or altered ``.z8`` must be caught here, by its header
and checksum, with an error that names the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from envs.cache import cache_root
from envs.environ import environ_set
from envs.tw.options import COOKING_FOOD_SPLIT, CookingOptions, QuestOptions, generator_seed, options_key

GAME_FILE = "game.z8"
GAME_JSON = "game.json"


class GameFileError(ValueError):
    """A TextWorld game file is missing, damaged or not a game TextWorld made."""


class GameGenerationError(RuntimeError):
    """TextWorld could not generate a game with the requested options."""


def textworld_root() -> Path:
    """The TextWorld part of the cache: one folder per game family."""
    return cache_root() / "textworld"


def game_path(kind: str, options: CookingOptions | QuestOptions, split: str, index: int) -> Path:
    """Where game `index` of `split` lives in the cache (it may not exist yet)."""
    import textworld

    family = options_key(kind, options, split, textworld.__version__)
    return textworld_root() / family / f"seed-{generator_seed(split, index)}" / GAME_FILE


def ensure_game(
    kind: str, options: CookingOptions | QuestOptions, split: str, index: int, generate: bool = True
) -> Path:
    """Return the path of game `index` of `split`, generating and caching it first if it is missing."""
    path = game_path(kind, options, split, index)
    if path.is_file() and path.with_name(GAME_JSON).is_file():
        return path
    if not generate:
        raise GameFileError(
            f"game file {path} does not exist and generation is off; build the pool first with "
            f"`oel envs make-games --kind {kind} --split {split} --seed {index} --count 1`"
        )
    _generate_into_cache(kind, options, split, index, path.parent)
    return path


def generate_game(
    kind: str, options: CookingOptions | QuestOptions, split: str, seed: int, out: Path
) -> None:
    """Make one game with TextWorld's generator and compile it to `out` (a `.z8` path)."""
    import textworld
    from textworld.challenges import CHALLENGES
    from textworld.generator import CouldNotCompileGameError, QuestGenerationError, compile_game, make_game

    game_options = textworld.GameOptions()
    game_options.seeds = seed
    game_options.path = str(out)
    game_options.force_recompile = True
    try:
        if isinstance(options, CookingOptions):
            _, make_cooking, _ = CHALLENGES["tw-cooking"]
            settings = {**asdict(options), "recipe_seed": 0, "split": COOKING_FOOD_SPLIT[split]}
            game = make_cooking(settings=settings, options=game_options)
        else:
            game_options.nb_rooms = options.world_size
            game_options.nb_objects = options.nb_objects
            chaining = game_options.chaining
            chaining.min_length = chaining.max_length = chaining.max_depth = options.quest_length
            chaining.min_breadth = chaining.max_breadth = options.quest_breadth
            game = make_game(game_options)
    except QuestGenerationError as err:
        raise GameGenerationError(
            f"TextWorld found no {kind} quest for options {asdict(options)} with seed {seed}: {err}; "
            "try a larger world or a shorter quest"
        ) from err
    try:
        compile_game(game, game_options)
    except CouldNotCompileGameError as err:
        raise GameGenerationError(
            f"Inform7 could not compile the {kind} game with seed {seed}: {err}"
        ) from err


def _generate_into_cache(
    kind: str, options: CookingOptions | QuestOptions, split: str, index: int, final_dir: Path
) -> None:
    """Generate into a temporary sibling of `final_dir`, then rename it into place."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final_dir.parent))
    try:
        seed = generator_seed(split, index)
        with _private_home(textworld_root() / ".home"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Jericho's notes on TextWorld's own check run
            generate_game(kind, options, split, seed, tmp / GAME_FILE)
        (tmp / "game.ni").unlink(missing_ok=True)  # Inform source, a by-product of compiling
        record = {"kind": kind, "split": split, "index": index, "seed": seed, "options": asdict(options)}
        (tmp / "options.json").write_text(json.dumps(record, indent=2) + "\n")
        check_game_file(tmp / GAME_FILE)
        try:
            os.rename(tmp, final_dir)
        except OSError:
            if not (final_dir / GAME_FILE).is_file():
                raise  # not a lost race: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _private_home(home: Path) -> Iterator[None]:
    """Point HOME at `home` for the duration, so Inform7 never writes into the user's home."""
    home.mkdir(parents=True, exist_ok=True)
    with environ_set("HOME", str(home)):
        yield


def check_game_file(path: str | Path) -> Path:
    """Check that `path` is a whole Z-machine story with its TextWorld `.json` beside it; return it.

    Reads the Z-machine header: version byte, declared file length and the
    checksum of everything after the 64-byte header (Z-machine standard 1.1,
    section 11), so truncation and altered bytes are both caught.
    """
    path = Path(path)
    if path.suffix != ".z8":
        raise GameFileError(f"game file {path}: expected a .z8 story file made by TextWorld")
    if not path.is_file():
        raise GameFileError(f"game file {path} does not exist")
    if not path.with_suffix(".json").is_file():
        raise GameFileError(
            f"game file {path}: its TextWorld description {path.with_suffix('.json')} does not exist"
        )
    data = path.read_bytes()
    if len(data) < 64 or data[0] != 8:
        raise GameFileError(f"game file {path} is corrupt: not a version-8 Z-machine story")
    length = int.from_bytes(data[0x1A:0x1C], "big") * 8
    if length < 64 or len(data) < length:
        raise GameFileError(f"game file {path} is corrupt: truncated to {len(data)} of {length} bytes")
    if sum(data[0x40:length]) % 0x10000 != int.from_bytes(data[0x1C:0x1E], "big"):
        raise GameFileError(f"game file {path} is corrupt: its checksum does not match")
    return path
