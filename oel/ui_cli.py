"""`oel ui`: serve the read-only web view of the store (`oel.ui.app`) on localhost."""

from __future__ import annotations

import typer

from agent.cli import DB_HELP


def ui(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default serves this machine only."),
    port: int = typer.Option(8765, min=1, max=65535, help="Port to serve on."),
) -> None:
    """Browse runs, episodes (tokens coloured by log-prob), GRPO groups, knowledge and its provenance."""
    import uvicorn

    from memory.errors import StoreError
    from oel.ui.app import create_app

    try:
        app = create_app(db)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"serving {app.state.store.where()} read-only at http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(root: typer.Typer) -> None:
    """Attach `oel ui` to the root command."""
    root.command("ui")(ui)
