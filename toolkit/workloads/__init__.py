"""The workload registry: every built-in workload, keyed `framework/name`.

The framework modules import their framework only inside methods, so importing this registry
is cheap and works without any framework installed.
"""

from __future__ import annotations

from toolkit.errors import BadInputError
from toolkit.workloads import keras, sklearn, torch
from toolkit.workloads.base import Trained, Workload

REGISTRY: dict[str, Workload] = {
    w.key: w for w in (*sklearn.WORKLOADS, *keras.WORKLOADS, *torch.WORKLOADS)
}
FRAMEWORKS = ("sklearn", "keras", "torch")


def get(key: str) -> Workload:
    try:
        return REGISTRY[key]
    except KeyError:
        raise BadInputError(
            f"unknown workload {key!r}; `deploybench list` shows the valid names"
        ) from None


def select(names: list[str] | None, frameworks: list[str] | None) -> list[Workload]:
    """Workloads by `framework/name` or bare `name` (every framework that has it), then
    filtered by framework; order is the registry's."""
    for framework in frameworks or []:
        if framework not in FRAMEWORKS:
            raise BadInputError(
                f"unknown framework {framework!r}; valid: {', '.join(FRAMEWORKS)}"
            )
    chosen = list(REGISTRY.values())
    if names:
        wanted = set()
        for name in names:
            matches = [w.key for w in chosen if name in (w.key, w.name)]
            if not matches:
                raise BadInputError(
                    f"unknown workload {name!r}; `deploybench list` shows the valid names"
                )
            wanted.update(matches)
        chosen = [w for w in chosen if w.key in wanted]
    if frameworks:
        chosen = [w for w in chosen if w.framework in frameworks]
    return chosen


__all__ = ["FRAMEWORKS", "REGISTRY", "Trained", "Workload", "get", "select"]
