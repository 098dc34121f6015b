"""`oel ui`: serve the read-only web view of the store (`oel.ui.app`) on localhost.

The viewer has no login: whoever can reach its address reads the whole store.
`--host` on anything but a loopback address therefore prints a warning that
the store becomes readable from the network.
"""

from __future__ import annotations

import ipaddress

import typer

from envs.command_errors import reported
from memory.cli import db_option


def ui(
    db: str | None = db_option(),
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default serves this machine only."),
    port: int = typer.Option(8765, min=1, max=65535, help="Port to serve on."),
) -> None:
    """Browse runs, episodes (tokens coloured by log-prob), GRPO groups, knowledge and its provenance."""
    import uvicorn

    from memory.errors import StoreError
    from oel.ui.app import create_app

    with reported(StoreError):
        app = create_app(db)
    if not is_loopback(host):
        typer.echo(
            f"warning: --host {host} serves the store to the network: anyone who can reach this machine on "
            f"port {port} can read every episode, prompt, reply and knowledge item in it, with no login; "
            "the default 127.0.0.1 serves this machine only",
            err=True,
        )
    typer.echo(f"serving {app.state.store.where()} read-only at http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


def register(root: typer.Typer) -> None:
    """Attach `oel ui` to the root command."""
    root.command("ui")(ui)
