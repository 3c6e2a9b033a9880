"""`deploybench advise` on a built-in workload, end to end: its own file, so that the two whole
advise runs of the suite go to different test processes (pytest-xdist's --dist loadfile)."""

from __future__ import annotations

import json

import pytest

from tests.test_advise import ORT, ran_its_search
from toolkit.suite import parse_suite


def test_advise_on_a_built_in_workload_times_native_and_onnx_and_their_session_options(
        tmp_path):
    """The whole command on torch/digits-mlp: the workload built and exported in its trial,
    native torch and ONNX Runtime timed, ONNX Runtime's session options timed on the exported
    file (each by its own bench, read back), searched, and the pair that must be confirmed
    confirmed under LoadGen, each with the cores' speed read around it."""
    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from toolkit.cli import app
    from toolkit.results import read_results

    out = tmp_path / "advice"
    result = CliRunner().invoke(app, ["advise", "torch/digits-mlp", "--p99-ms", "20",
                                      "--threads", "1", "--recipes", "fp32", "--budget", "3m",
                                      "--no-controls", "--out", str(out)])
    assert result.exit_code in (0, 1), result.output
    advice = json.loads((out / "advice.json").read_text())
    assert advice["workload"] == "torch/digits-mlp"
    assert set(advice["trials"]["options"]) == {ORT, "native_torch fp32"}
    _, records = read_results(out / "trials" / "t1-memory_pattern-off" / "results.json")
    timed = [r for r in records if r.phase == "infer" and r.ok]
    assert timed and all(r.settings["memory_pattern"] is False for r in timed)
    assert {t["config"]["option"] for t in advice["tried"]} == {ORT, "native_torch fp32"}
    roles = [c["role"] for c in advice["confirmed"]]
    assert "default" in roles
    # the cores read before and after each confirmation that ran its search (one cut by its
    # timeout, or whose pool never started, has no record of the search to keep them in)
    searched = [c for c in advice["confirmed"] if ran_its_search(c)]
    assert all(len(c["core_speed"]) == 2 for c in searched), advice["confirmed"]
    assert searched or result.exit_code == 1, advice["confirmed"]
    picked = advice["pick"]
    assert (result.exit_code == 0) == (picked is not None), result.output
    # --no-controls: the calibration's trivial model is not confirmed beside them
    assert all(h["role"] != "control" for h in advice["held"]) and advice["in_rounds"] is None
    if picked is not None:
        assert "serve torch/digits-mlp as " in result.output
        import tomllib

        suite = parse_suite(tomllib.loads((out / "advice.md").read_text().split(
            "```toml\n")[1].split("```")[0]))
        assert suite.workloads == ("torch/digits-mlp",) and suite.scenarios[0].p99_ms == 20
