"""`oel envs ...`: list the registered environments and build game pools."""

from __future__ import annotations

import typer

from envs.command_errors import fail

app = typer.Typer(help="Text environments: list them, generate TextWorld game pools.", no_args_is_help=True)


@app.command("list")
def list_envs() -> None:
    """Print every registered environment id with a one-line description."""
    from rich.console import Console
    from rich.table import Table

    from envs.registry import ENVIRONMENTS

    table = Table("id", "description", "train / val / test kept apart", "lists commands")
    for spec in ENVIRONMENTS:
        table.add_row(spec.env_id, spec.description, spec.splits, "yes" if spec.commands else "no")
    Console().print(table)


@app.command("make-games")
def make_games(
    kind: str = typer.Option("cooking", help="Game kind: cooking (TextWorld's cooking challenge) or quest."),
    count: int = typer.Option(10, min=1, help="How many games to build."),
    seed: int = typer.Option(
        0, min=0, help="First game index: builds SEED..SEED+COUNT-1; reset(seed=s) plays index s % pool_size."
    ),
    split: str = typer.Option(
        "train", help="Split to build: train, val (for choosing settings), or the held-out test."
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-o",
        help="Game option NAME=VALUE, repeatable. cooking: recipe, take, go, open, cook, cut, drop; "
        "quest: world_size, nb_objects, quest_length, quest_breadth. Use the same options as the env.",
    ),
) -> None:
    """Generate a pool of TextWorld games into the cache (already cached games are skipped)."""
    from tqdm import tqdm

    from envs.tw.games import GameGenerationError, ensure_game, game_path
    from envs.tw.options import TextWorldOptionError, check_split, make_options, parse_option

    try:
        check_split(split)
        options = make_options(kind, **dict(parse_option(kind, text) for text in option))
    except TextWorldOptionError as err:
        raise typer.BadParameter(str(err)) from None
    cached = 0
    for index in tqdm(range(seed, seed + count), desc=f"{kind} {split} games", unit="game"):
        cached += game_path(kind, options, split, index).is_file()
        try:
            ensure_game(kind, options, split, index)
        except GameGenerationError as err:
            fail(str(err))
    folder = game_path(kind, options, split, seed).parent.parent
    typer.echo(f"{count - cached} generated, {cached} already cached, in {folder}")


def register(root: typer.Typer) -> None:
    """Attach this package's commands to the root `oel` command."""
    root.add_typer(app, name="envs")
