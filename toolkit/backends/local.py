"""The local backend: each step on this machine, one at a time, in the order it was started."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.backends import Finished
from toolkit.plans.steps import Context, Step
from toolkit.results import ResultsFile


class LocalBackend:
    slots: int | None = 1  # one measurement at a time: two would distort each other

    def __init__(self) -> None:
        self._started: list[tuple[Step, Context]] = []

    def open(self, threads: int, driver: Mapping[str, Any]) -> None:
        """Nothing to join: this machine runs the steps."""

    def prepare(self, steps: Sequence[Step], results: ResultsFile) -> list[Step]:
        return list(steps)

    def submit(self, step: Step, context: Context) -> None:
        self._started.append((step, context))

    def wait(self) -> list[Finished]:
        step, context = self._started.pop(0)
        return [Finished(step, step.execute(context))]

    def cancel(self) -> None:
        self._started.clear()

    def finish(self) -> None:
        """Nothing kept elsewhere: the run's files are its folder."""
