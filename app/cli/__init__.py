"""The `smartbench` command (app/cli/base.py holds the Typer application; each module here adds
its commands to it)."""

from __future__ import annotations

import logging

from app.cli.base import cli, proxy_options

# Imported in the order `smartbench --help` lists their commands.
# isort: off
from app.cli import serving
from app.cli import probing
from app.cli import data
from app.cli import admin

# isort: on

__all__ = ["admin", "cli", "data", "main", "probing", "proxy_options", "serving"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli()
