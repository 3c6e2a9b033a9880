"""Every exporter, every method: a real tiny model, a valid ONNX file with a free batch
dimension, and parity with the native model. One child process per framework."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from exporters import EXPORTERS
from toolkit.environment import missing_framework

HERE = Path(__file__).parent


def run_check(name: str) -> list[dict]:
    proc = subprocess.run([sys.executable, str(HERE / "exporter_check.py"), name],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("framework", sorted(EXPORTERS))
def test_exporter_contract(framework):
    missing = missing_framework(framework)
    if missing:
        pytest.skip(missing)
    results = run_check(framework)
    assert [r["method"] for r in results] == list(EXPORTERS[framework].methods)
    for result in results:
        assert "error" not in result, result
        assert result["batch_free"] is True
        assert result["rows_out_at_7"] == 7  # the free batch dimension really is free
        assert result["opset"] == 18
        assert result["size_bytes"] > 0 and result["seconds"] > 0
        assert result["parity_passed"], result
        assert result["label_agreement"] == 1.0


def test_hist_gradient_boosting_export_gap_is_reported():
    missing = missing_framework("sklearn")
    if missing:
        pytest.skip(missing)
    (result,) = run_check("sklearn-hgb")
    if "error" not in result:
        pytest.skip("this skl2onnx exports HistGradientBoostingClassifier: the gap is closed")
    assert result["error"].startswith("skl2onnx failed: ")
    assert "Expected an int, got a boolean" in result["error"]
