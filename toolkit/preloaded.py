"""What a fork server imported before it forked this process (`toolkit.forkserver`).

Read by the step that reports an import time; empty in a spawned process. A module of its own,
so the steps need not import the server's code.
"""

from __future__ import annotations

PRELOADED: dict[str, float] = {}  # runner name -> import seconds, measured by the server


def preloaded_import_seconds(runner: str) -> float | None:
    """In a child forked from a server that imported `runner`'s runtime: the seconds that import
    took there; None in a spawned child."""
    return PRELOADED.get(runner)
