"""Run by tests/test_exporters.py in a child (one framework per process, as DESIGN.md asks):
train a tiny model of FRAMEWORK, export it with every method of its exporter, check parity, and
print one JSON line per method."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from exporters import EXPORTERS
from exporters.parity import compare
from exporters.session import session_options
from toolkit import data
from toolkit.errors import ExportFailedError
from toolkit.runners.onnxruntime import create_session
from toolkit.workloads import get

# One small workload per framework, trained on a slice of its data.
TINY = {"sklearn": "sklearn/digits-logreg", "keras": "keras/digits-mlp",
        "torch": "torch/digits-cnn", "sklearn-hgb": "sklearn/digits-hgb"}


def main(framework: str) -> None:
    workload = get(TINY[framework])
    workload.epochs = 1
    full = workload.dataset()
    ds = replace(full, x_train=full.x_train[:300], y_train=full.y_train[:300],
                 x_test=full.x_test[:50], y_test=full.y_test[:50])
    trained = workload.train(ds)
    native = workload.scores(trained.model, ds.x_test)
    exporter = EXPORTERS[workload.framework]
    with tempfile.TemporaryDirectory() as tmp:
        for method in exporter.methods:
            path = Path(tmp) / f"{method.replace(' ', '_')}.onnx"
            try:
                exported = exporter.export(trained.model, ds.x_test[:4], path, 18, method)
            except ExportFailedError as exc:
                print(json.dumps({"method": method, "error": str(exc)}))
                continue
            session = create_session(path, "cpu", session_options(1, "all"))
            outputs = session.run(None, {exported.input_name: data.make_batch(ds.x_test, 7)})
            scores = session.run(None, {exported.input_name: ds.x_test})[exported.score_output]
            parity = compare(native, np.asarray(scores), ds.task)
            print(json.dumps({
                "method": method, "opset": exported.opset, "size_bytes": exported.size_bytes,
                "batch_free": exported.batch_free, "seconds": exported.seconds,
                "version": exported.exporter_version, "rows_out_at_7": len(outputs[0]),
                "parity_passed": parity.passed, "max_abs": parity.max_abs,
                "label_agreement": parity.label_agreement,
            }))


if __name__ == "__main__":
    main(sys.argv[1])
