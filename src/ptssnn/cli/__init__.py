"""Command line: a thin layer over the Python API.

Each concern owns one module here and exposes ``register(app)``; errors a user can cause
(:class:`ptssnn.errors.PtssnnError`) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from ptssnn import __version__
from ptssnn.cli import data, deploy, enrol, features, model, run, use
from ptssnn.errors import PtssnnError

app = typer.Typer(
    name="ptssnn",
    help="PTS-SNN: spiking speech emotion recognition on frozen speech encoders.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: wraps at any width (rich cut words to "…" at 80)
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Command modules import torch, numpy and the models inside their commands, never at import
# time, so `ptssnn --help` and `--version` stay fast (tests/cli/test_startup.py).
for _module in (data, features, model, run, deploy, use, enrol):
    _module.register(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ptssnn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    pass


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except PtssnnError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
