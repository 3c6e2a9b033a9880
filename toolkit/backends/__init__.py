"""Where a plan's steps run: a backend, under the one executor (`toolkit.executor`).

    local     each step here, one at a time (each in a fresh child process where it has work)
    cluster   each step as a Ray task holding a node's `deploybench` unit, files shipped to and
              from the node (`toolkit.backends.cluster`, `toolkit.backends.files`)

The executor owns the loop (progress, dependencies, stamping, interrupt, resume, results); a
backend only starts a step and says when one has finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from toolkit.plans.steps import Context, Step
from toolkit.results import Record, ResultsFile


@dataclass(frozen=True)
class Finished:
    """A step that ended: its records, or why its task ended without any (`failure`)."""

    step: Step
    records: list[Record]
    failure: str | None = None


class Backend(Protocol):
    slots: int | None  # steps running at once (None: every step that is ready)

    def open(self, threads: int, driver: Mapping[str, Any]) -> None:
        """Check that it can run the steps at all (join a cluster, check its nodes against the
        driver's environment `driver`), before a results folder is made."""

    def prepare(self, steps: Sequence[Step], results: ResultsFile) -> list[Step]:
        """Get ready to run (join a cluster, describe its nodes into `results`); the steps as
        this backend runs them (one per node where every node measures)."""

    def submit(self, step: Step, context: Context) -> None:
        """Start `step`; its inputs' records are in `context.done`."""

    def wait(self) -> list[Finished]:
        """At least one started step that has ended."""

    def cancel(self) -> None:
        """Stop what runs (each step's own cleanup kills its child)."""

    def finish(self) -> None:
        """The run ended with every step done: remove what the backend kept for it elsewhere
        (a cluster node's copies). Not called on an interrupt: --resume reuses them."""


__all__ = ["Backend", "Finished"]
