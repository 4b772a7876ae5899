"""tether configbot (being written)."""

import typer

app = typer.Typer()
