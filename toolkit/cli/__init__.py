"""The deploybench command line: one module per command, each parsing, calling and rendering.

`app` is the Typer app (the docs' CLI reference is generated from it); `main` the console
script. Importing the command modules registers them, in the order `--help` lists them.
"""

from toolkit.cli import run, compare, loadgen, advise, files, machine  # noqa: F401, I001
from toolkit.cli.common import app, main

__all__ = ["app", "main"]
