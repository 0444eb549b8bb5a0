"""The command line (``fenliu ...``): nothing imports it."""

from fenliu.cli.commands import main

__all__ = ["main"]
