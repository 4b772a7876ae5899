"""`tether robot`: placeholder (being written)."""

import typer

app = typer.Typer(help="The simulated robot testbed.")
