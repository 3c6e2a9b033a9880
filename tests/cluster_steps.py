"""Plan steps for the cluster tests (importable by Ray's worker processes)."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.plan import Context
from toolkit.results import Record


@dataclass(frozen=True)
class Crash:
    """A step whose process dies: the Ray task crashes with it (no records come back)."""

    workload: str = "sklearn/crash"
    label: str = "sklearn/crash build"
    what: str = "crashing on purpose"

    def execute(self, context: Context) -> list[Record]:
        import os

        os._exit(3)
