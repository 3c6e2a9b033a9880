"""`advise`'s planners: its trials, and its confirmations of one configuration under LoadGen.

The trials are a built-in workload's or a model file's cases timed at the batch sizes a serving
path sends, with their recipes; a confirmation is one configuration under LoadGen Server, from
the trials' files, made in rounds, each round every configuration side by side
(`confirm_round_plan`). Both run on the one executor, so a trial or a confirmation that was cut
short resumes like any other run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.plans.base import Plan
from toolkit.plans.model import ModelRequest, plan_model
from toolkit.plans.run import plan_suite
from toolkit.plans.steps import (
    Confirmation,
    ConfirmRound,
    Scenario,
    Sources,
    build_label,
    derive_label,
)
from toolkit.results import Record
from toolkit.scenarios import BATCHING, ScenarioSettings
from toolkit.suite import Case, Suite, stored_scenario


def trial_plan(target: str, request: ModelRequest | None, suite: Suite, out_dir: Path) -> Plan:
    """The trials at one thread count: `run`'s plan of a built-in workload, or `bench`'s of a
    model file (their commands, so each resumes as they do)."""
    if request is not None:
        return plan_model(request, suite, out_dir)
    return plan_suite(suite)


def serving_variant(runtime: str, max_batch: int) -> str:
    """How `advise` serves an option: ONNX Runtime from worker threads with a session each (it
    releases the GIL), a native runtime from worker processes (it holds it)."""
    pool = "per-worker" if runtime == "onnxruntime" else "processes"
    return pool + (BATCHING if max_batch > 1 else "")


def confirm_plan(case: Case, variant: str, settings: ScenarioSettings, sources: Sources,
                 suite: Suite, name: str, round_: int = 1,
                 start_qps: Mapping[str, float] | None = None) -> Plan:
    """One configuration under LoadGen in one round of the confirmations: a Scenario step
    reading the trials' files, its search started from `start_qps` (the configuration's
    sustained peak in the round before, by batch size) where given."""
    start = tuple(sorted((start_qps or {}).items()))
    step = Scenario(case, variant, settings, None, sources, round_, start)
    run = {"command": "advise-confirm", "suite": suite.to_dict(), "name": name,
           "case": dataclasses.asdict(case), "variant": variant,
           "settings": settings.to_dict(), "sources": _sources_dict(sources),
           "round": round_, "start_qps": dict(start)}
    return Plan(suite, [step], run)


def confirm_round_plan(confirmations: Sequence[Confirmation], round_: int) -> Plan:
    """One round of the confirmations: every configuration side by side in one step
    (`ConfirmRound`), each reading the trials' files with its own suite, its search started
    from its sustained peak in the round before where it has one."""
    suite = dataclasses.replace(confirmations[0].suite,
                                timeout_s=sum(c.suite.timeout_s for c in confirmations))
    run = {"command": "advise-confirm-round", "suite": suite.to_dict(), "round": round_,
           "confirmations": [{"tag": c.tag, "case": dataclasses.asdict(c.case),
                              "variant": c.variant, "settings": c.settings.to_dict(),
                              "sources": _sources_dict(c.sources), "suite": c.suite.to_dict(),
                              "start_qps": dict(c.start_qps)} for c in confirmations]}
    return Plan(suite, [ConfirmRound(tuple(confirmations), round_)], run)


def replan_confirm_round(stored: Mapping[str, Any], suite: Suite, out_dir: Path,
                         trust_pickle: bool) -> Plan:
    """A round of confirmations' plan, made again from its results.json."""
    try:
        made = []
        for raw in stored["confirmations"]:
            own = Suite.from_dict(raw["suite"])
            settings = ScenarioSettings.from_dict(stored_scenario(raw["settings"], own.threads,
                                                                  own.providers))
            made.append(Confirmation(
                str(raw["tag"]), Case(**raw["case"]), str(raw["variant"]), settings,
                Sources(**raw["sources"]), own,
                tuple(sorted((str(k), float(v)) for k, v in (raw.get("start_qps") or {})
                             .items()))))
        return confirm_round_plan(made, int(stored["round"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadInputError(f"--resume {out_dir}: its confirmations are not stored as advise "
                            f"writes them ({exc})") from None


def replan_confirm(stored: Mapping[str, Any], suite: Suite, out_dir: Path,
                   trust_pickle: bool) -> Plan:
    """A confirmation's plan, made again from its results.json."""
    try:
        case = Case(**stored["case"])
        settings = ScenarioSettings.from_dict(stored_scenario(stored["settings"], suite.threads,
                                                              suite.providers))
        sources = Sources(**stored["sources"])
        return confirm_plan(case, str(stored["variant"]), settings, sources, suite,
                            str(stored["name"]), int(stored.get("round", 1)),
                            {str(k): float(v) for k, v in (stored.get("start_qps") or {}).items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"--resume {out_dir}: its confirmation is not stored as advise "
                            f"writes it ({exc})") from None


def _sources_dict(sources: Sources) -> dict[str, Any]:
    return {"native": sources.native, "onnx": sources.onnx, "inputs": sources.inputs,
            "reference": dict(sources.reference) if sources.reference else None,
            "calibration": sources.calibration, "digests": dict(sources.digests)}


def trial_sources(run: Mapping[str, Any], records: Sequence[Record], folder: Path,
                  workload: str, recipe: str) -> Sources:
    """The files a confirmation of `recipe` reads: the build's (or the ONNX file given), then
    the recipe's own file where it has one."""
    given = None
    request = run.get("request")
    if request and str(request.get("path", "")).lower().endswith(".onnx"):
        calibration = folder / "calibration.npz"
        given = Sources(onnx=str(Path(request["path"]).resolve()),
                        inputs=str(folder / "inputs.npz"),
                        calibration=str(calibration) if calibration.is_file() else None)
    sources = Sources.from_records([r for r in records if r.step == build_label(workload)],
                                   given)
    if recipe != "fp32":
        made = [r for r in records if r.step == derive_label(workload, recipe)]
        sources = Sources.from_records(made, sources)
    return sources
