"""A plan: the steps of one run, and what its results.json keeps to make it again."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.plans.steps import Step
from toolkit.results import Record
from toolkit.suite import Suite

# More steps from the records so far (a search choosing its next trials): called after every
# step, it returns the steps to add; those whose labels the plan has already are ignored.
Grow = Callable[[Mapping[str, list[Record]]], Sequence[Step]]


@dataclass(frozen=True)
class Plan:
    suite: Suite
    steps: Sequence[Step]
    run: Mapping[str, Any]  # the run section of results.json: what makes this plan again
    grow: Grow | None = None
