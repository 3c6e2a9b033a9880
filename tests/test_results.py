import json

import pytest

from toolkit.errors import BadInputError
from toolkit.results import SCHEMA, Parity, Record, ResultsFile, read_results
from toolkit.stats import Stats


def sample_record() -> Record:
    return Record(
        workload="digits-mlp", framework="torch", phase="infer", runtime="onnxruntime",
        variant="run", provider="cpu", batch_size=64, stats=Stats.from_ms([1.0, 2.0, 3.0]),
        throughput_rows_s=32_000.0, threads=2, warnings=("w",),
        parity=Parity(1e-7, 1e-6, 1.0, True, 1e-4, 1e-5, 10), info={"idiomatic": False},
    )


def test_record_round_trips_through_json(tmp_path):
    results = ResultsFile(tmp_path / "results.json", {"suite": {"name": "x"}})
    results.append([sample_record(), Record("seed-linreg", "sklearn", "train", seconds=0.5)])
    run, records = read_results(tmp_path / "results.json")
    assert run == {"suite": {"name": "x"}}
    assert records[0] == sample_record()
    assert records[1].seconds == 0.5
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["schema"] == SCHEMA
    assert not list(tmp_path.glob(".results.json.*"))  # no temporary file left behind


def test_record_rejects_unknown_phase_and_status():
    with pytest.raises(ValueError):
        Record("w", "torch", phase="serve")
    with pytest.raises(ValueError):
        Record("w", "torch", phase="infer", status="maybe")


def test_load_names_the_bad_file(tmp_path):
    with pytest.raises(BadInputError, match="no such results file"):
        read_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadInputError, match="bad.json"):
        read_results(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(BadInputError, match="not a deploybench results file"):
        read_results(other)


def test_the_case_key_keeps_two_configurations_apart():
    base = Record("m", "onnx", "infer", runtime="onnxruntime", variant="run", provider="cpu",
                  batch_size=1, threads=2, settings={"graph_optimization": "all"})
    same = [base, Record(**{**base.to_dict(), "stats": None, "parity": None,
                            "info": {"node": {"name": "a", "placement": "spread"}}})]
    assert len({r.case.key for r in same}) == 1  # a spread run's node is no configuration
    apart = [base,
             Record(**{**base.to_dict(), "stats": None, "parity": None, "threads": 1}),
             Record(**{**base.to_dict(), "stats": None, "parity": None,
                       "settings": {"graph_optimization": "disable"}}),
             Record(**{**base.to_dict(), "stats": None, "parity": None,
                       "info": {"node": {"name": "gpu-1", "placement": "each-node"}}}),
             Record(**{**base.to_dict(), "stats": None, "parity": None,  # a suite's [session]
                       "settings": {"graph_optimization": "all", "memory_arena": False,
                                    "memory_pattern": True}})]
    keys = [r.case.key for r in apart]
    assert len(set(keys)) == 5, keys
    assert keys[3].endswith("@gpu-1") and "opt=disable" in keys[2]
    assert keys[4].endswith("arena=off") and "pattern" not in keys[4]
    assert {r.case.option for r in apart} == {"onnxruntime cpu"}  # one row name in reports
