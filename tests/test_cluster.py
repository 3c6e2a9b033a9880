"""A suite on a local two-node Ray cluster (`ray.cluster_utils.Cluster`): one measurement per
node at a time, every case on every node with each-node, and records that say where they ran."""

from __future__ import annotations

import pytest

from tests.conftest import write_suite
from toolkit import executor
from toolkit.plan import plan_suite
from toolkit.suite import load_suite


@pytest.fixture(scope="module")
def two_nodes():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install "
                              "'deploybench[cluster]')")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"deploybench": 1}})
    cluster.add_node(num_cpus=1, resources={"deploybench": 1})
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_each_node_measures_every_case_once_per_node_never_two_at_once(two_nodes, tmp_path):
    suite = load_suite(str(write_suite(tmp_path / "s.toml", ["sklearn/seed-linreg"], ["cpu"],
                                       [1], rounds=1)))
    outcome = executor.start(plan_suite(suite), tmp_path / "out",
                             cluster=executor.ClusterRun(two_nodes.address, "each-node"))
    assert not outcome.interrupted
    records = outcome.records
    assert all("node" in r.info for r in records)
    timed = [r for r in records if r.timed]
    per_case: dict[tuple[str, str], set[str]] = {}
    for record in timed:
        per_case.setdefault((record.runtime, record.variant), set()).add(
            record.info["node"]["node_id"])
    assert per_case and all(len(nodes) == 2 for nodes in per_case.values()), per_case
    import socket

    host = socket.gethostname()  # both test nodes run here: labels number them, by hostname
    assert {r.step.rsplit(" @", 1)[1] for r in timed} == {f"{host}#1", f"{host}#2"}
    assert {r.info["node"]["name"] for r in timed} == {f"{host}#1", f"{host}#2"}
    spans: dict[str, set[tuple[float, float]]] = {}
    for record in records:
        node = record.info["node"]
        spans.setdefault(node["node_id"], set()).add((node["started"], node["ended"]))
    for node_spans in spans.values():
        ordered = sorted(node_spans)
        assert all(b[0] >= a[1] for a, b in zip(ordered, ordered[1:], strict=False)), ordered
    from toolkit.results import read_results

    run, _ = read_results(outcome.results_path)
    assert len(run["nodes"]) == 2 and run["cluster"]["placement"] == "each-node"


def test_spread_measures_each_case_once_and_a_crashed_task_is_a_failed_record(two_nodes,
                                                                            tmp_path):
    import dataclasses

    from tests.cluster_steps import Crash

    suite = load_suite(str(write_suite(tmp_path / "s.toml", ["sklearn/seed-linreg"], ["cpu"],
                                       [1], rounds=2)))
    plan = plan_suite(suite)
    plan = dataclasses.replace(plan, steps=[Crash(), *plan.steps])
    outcome = executor.start(plan, tmp_path / "out",
                             cluster=executor.ClusterRun(two_nodes.address, "spread"))
    crashed = [r for r in outcome.records if r.step == "sklearn/crash build"]
    assert [r.status for r in crashed] == ["failed"] and "Ray task failed" in crashed[0].reason
    timed = [r for r in outcome.records if r.timed]
    keys = [(r.runtime, r.variant, r.round) for r in timed]
    assert len(keys) == len(set(keys)) and {r for _, _, r in keys} == {1, 2}  # each once


def test_files_a_build_made_reach_a_node_that_lacks_them(tmp_path):
    from toolkit.cluster import pack, unpack
    from toolkit.results import Record

    model = tmp_path / "a" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"onnx bytes")
    saved = tmp_path / "a" / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "variables" / "v.data").write_bytes(b"weights")
    record = Record("w", "keras", "export", info={"onnx": str(model), "artifact": str(saved),
                                                   "rows": 3})
    files = pack([record])
    assert set(files) == {str(model), str(saved / "variables" / "v.data")}
    model.unlink()
    (saved / "variables" / "v.data").unlink()
    unpack(files)
    assert model.read_bytes() == b"onnx bytes"
    assert (saved / "variables" / "v.data").read_bytes() == b"weights"


def test_without_ray_cluster_says_which_extra_to_install(monkeypatch):
    import importlib.util

    from toolkit import cluster
    from toolkit.errors import BadInputError

    real = importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(BadInputError, match=r"pip install 'deploybench\[cluster\]'"):
        cluster.connect("local")


def test_sigterm_cancels_a_cluster_run_and_resume_finishes_it(tmp_path):
    """`run --cluster local` stopped after its first step: exit 130, the finished records kept,
    the run marked interrupted; `run --resume` finishes it on a new local cluster."""
    import json
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("ray", reason="Ray is not installed")
    suite = write_suite(tmp_path / "s.toml", ["sklearn/seed-linreg"], ["cpu"], [1], rounds=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "toolkit.cli", "run", "--history", str(tmp_path / "h")]
    proc = subprocess.Popen([*command, "--suite", str(suite), "--out", str(out), "--cluster",
                             "local"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the build's records are in
        path = out / "results.json"
        if path.is_file() and json.loads(path.read_text() or "{}").get("records"):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    kept = json.loads((out / "results.json").read_text())
    assert kept["run"]["interrupted"] is True and kept["records"]
    assert kept["run"]["cluster"]["address"] == "local"
    again = subprocess.run([*command, "--resume", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    done = json.loads((out / "results.json").read_text())
    assert not done["run"]["interrupted"]
    assert done["records"][:len(kept["records"])] == kept["records"]  # finished work kept
    steps = {r["step"] for r in done["records"]}
    assert {"sklearn/seed-linreg build", "sklearn/seed-linreg onnxruntime cpu #2"} <= steps
    assert all("node" in r["info"] for r in done["records"])


def test_a_hardware_specific_recipe_is_made_on_each_node_that_measures_it(two_nodes, tmp_path):
    path = write_suite(tmp_path / "s.toml", ["sklearn/seed-linreg"], ["cpu"], [1], rounds=1)
    path.write_text(path.read_text().replace("rounds = 1", 'rounds = 1\nrecipes = ["fp32", '
                                             '"ort-offline"]'))
    suite = load_suite(str(path))
    outcome = executor.start(plan_suite(suite), tmp_path / "out",
                             cluster=executor.ClusterRun(two_nodes.address, "each-node"))
    offline = [r for r in outcome.records if r.timed and r.recipe == "ort-offline"]
    assert len({r.info["node"]["node_id"] for r in offline}) == 2
    made = sorted((tmp_path / "out" / "nodes").glob("*/artifacts/*/*.onnx"))
    assert len({p.parts[-4] for p in made}) == 2, made  # one file per node, in its own folder
