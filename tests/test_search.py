"""The search `advise` makes, run over a recorded table (deterministic: no timing here)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from toolkit.search import Config, Limits, Outcome, Space, front, judged, run_search

optuna = pytest.importorskip("optuna", reason="Optuna is not installed (pip install "
                             "'deploybench[advise]')")

GRID = Path(__file__).parent / "data" / "advise_grid.json"


def recorded() -> tuple[Space, dict[Config, Outcome], dict]:
    data = json.loads(GRID.read_text(encoding="utf-8"))
    space = data["space"]
    space = Space(options=tuple(space["options"]), threads=tuple(space["threads"]),
                  workers=tuple(space["workers"]), max_batch=tuple(space["max_batch"]),
                  max_delay_ms=tuple(space["max_delay_ms"]),
                  session={k: tuple(v) for k, v in space["session"].items()},
                  cores=space["cores"])
    table = {Config.from_dict(row["config"]): Outcome(**row["outcome"])
             for row in data["outcomes"]}
    return space, table, data


def test_the_recorded_table_is_the_whole_space():
    space, table, data = recorded()
    assert len(table) == len(data["outcomes"])  # no configuration twice
    assert len(table) >= 300


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_finds_a_configuration_within_10_percent_of_the_tables_best(seed):
    space, table, _ = recorded()
    limits = Limits(max_quality_drop=0.01)
    best = max(o.rate for o in table.values() if limits.breaks(o) is None)
    budget = len(table) // 3
    asked: list[Config] = []

    def evaluate(config: Config) -> Outcome:
        asked.append(config)
        return table[config]

    tried = run_search(space, evaluate, limits, trials=budget, seed=seed)
    assert len(asked) <= budget and len(set(asked)) == len(asked)  # none evaluated twice
    found = front(tried)[0].outcome.rate
    assert found >= 0.9 * best, (found, best)


def test_a_configuration_beyond_a_limit_is_never_on_the_front():
    fast_but_wrong = Config("onnxruntime run int8-dynamic", 1, 2, 1, None)
    right = Config("onnxruntime run fp32", 1, 2, 1, None)
    slower = Config("onnxruntime run fp32", 1, 1, 1, None)
    seen = {fast_but_wrong: Outcome(9000.0, 4.0, 0.05), right: Outcome(5000.0, 4.5, 0.0),
            slower: Outcome(3000.0, 4.0, 0.0),
            Config("native_torch inference_mode fp32", 1, 2, 1, None): Outcome(
                9500.0, 3.0, 0.0, memory_mb=900.0)}
    tried = judged(seen, Limits(max_quality_drop=0.01, memory_mb=500.0))
    assert [t.config for t in front(tried)] == [right]
    why = {t.config.option + str(t.config.workers): t.why_lost for t in tried}
    assert "5.00% accuracy" in why["onnxruntime run int8-dynamic2"]
    assert "900 MB" in why["native_torch inference_mode fp322"]
    assert why["onnxruntime run fp321"].startswith("dominated by onnxruntime run fp32, 2 workers")


def test_a_resumed_search_goes_on_from_its_study_without_evaluating_again(tmp_path):
    space, table, _ = recorded()
    storage = f"sqlite:///{tmp_path / 'study.sqlite'}"
    asked: list[Config] = []

    def evaluate(config: Config) -> Outcome:
        asked.append(config)
        return table[config]

    model = {"model": "mlp.onnx", "p99_ms": 5}
    first = run_search(space, evaluate, Limits(), trials=12, storage=storage, seed=4,
                       context=model)
    count = len(asked)
    again = run_search(space, evaluate, Limits(), trials=24, storage=storage, seed=4,
                       context=model)
    study = optuna.load_study(study_name="advise", storage=storage)
    held = {json.dumps(t.user_attrs["config"], sort_keys=True) for t in study.trials}
    assert len(held) == 24 and len(again) == 24  # 12 more configurations, not 24 more
    assert {t.config for t in first} <= {t.config for t in again}  # the first half is kept
    assert len(asked) - count <= 12  # what the study held was not measured again


def test_a_study_is_not_resumed_for_another_model_or_space(tmp_path):
    from toolkit.errors import BadInputError

    space, table, _ = recorded()
    storage = f"sqlite:///{tmp_path / 'study.sqlite'}"
    run_search(space, table.__getitem__, Limits(), trials=5, storage=storage,
               context={"model": "a.onnx"})
    with pytest.raises(BadInputError, match="made for another model"):
        run_search(space, table.__getitem__, Limits(), trials=10, storage=storage,
                   context={"model": "b.onnx"})
    smaller = dataclasses.replace(space, max_batch=(1, 2))
    with pytest.raises(BadInputError, match="another model, bound or set of configurations"):
        run_search(smaller, table.__getitem__, Limits(), trials=10, storage=storage,
                   context={"model": "a.onnx"})
