"""Command line: a thin layer over the Python API.

Each concern owns one module here and exposes ``register(app)``; errors a user can cause
(:class:`ptssnn.errors.PtssnnError`) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ptssnn.cli import data, enrol, features, model, run, use
from ptssnn.errors import PtssnnError

app = typer.Typer(
    name="ptssnn",
    help="PTS-SNN: spiking speech emotion recognition on frozen speech encoders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _module in (data, features, model, run, use, enrol):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except PtssnnError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
