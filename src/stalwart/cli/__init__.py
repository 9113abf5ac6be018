"""The ``stalwart`` command line."""

from stalwart.cli._main import main

__all__ = ["main"]
