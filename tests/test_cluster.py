"""Runs on two Ray nodes that share no disk for the run's folders (`tests/ray_nodes.py`): the
head, where the driver runs, and node-b, whose view of the runs and models folder is an empty
tmpfs, as another machine's would be. Every file a step reads reaches node-b through the object
store, and every file it writes comes back to the driver's results folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import model_files, ray_nodes
from tests.conftest import write_suite
from toolkit import executor
from toolkit.backends.cluster import ClusterBackend, disconnect, run_key
from toolkit.backends.files import run_root
from toolkit.errors import BadInputError
from toolkit.plans.model import ModelRequest, bench_suite, plan_model
from toolkit.plans.run import plan_suite
from toolkit.results import Record
from toolkit.suite import load_suite
from toolkit.timing import Budget

TINY = Budget(warmup=1, min_iterations=3, min_seconds=0.0, max_seconds=0.1)
PATH_KEYS = ("artifact", "onnx", "inputs", "reference", "calibration", "logs")


@dataclass(frozen=True)
class Hosts:
    address: str
    folder: Path  # the driver's runs and models: node-b sees an empty tmpfs here (and over the
    # checkout of deploybench the tests run from)
    head: str  # the head's node label (its hostname)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'deploybench[cluster]')")
    why = ray_nodes.why_not()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("hosts")
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the test cluster's: no token to hand around
    address, head = ray_nodes.start_head(root / "logs")
    try:
        # nor does it see this checkout's code: it runs the code the driver ships (the
        # packages' folders are masked, not the checkout: `make test` keeps its venv there)
        checkout = Path(executor.__file__).resolve().parents[1]
        node = ray_nodes.start_hidden_node(
            address, [root / "driver", checkout / "toolkit", checkout / "exporters"],
            root / "logs")
    except BaseException:
        ray_nodes.stop(head)
        raise
    yield Hosts(address, root / "driver", socket.gethostname())
    disconnect()
    ray_nodes.stop(node)
    ray_nodes.stop(head)
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def files_named(records: list[Record]) -> list[str]:
    return [str(r.info[k]) for r in records for k in PATH_KEYS if isinstance(r.info.get(k), str)]


def assert_all_home(records: list[Record], out: Path, children: int) -> None:
    """Every file the records name is on the driver (under its results folder, or the user's
    own file), none names a node's folder, and every child's log came back."""
    named = files_named(records)
    assert all(Path(p).exists() for p in named), [p for p in named
                                                             if not Path(p).exists()]
    assert not [p for p in named if "deploybench-nodes-" in p]
    assert not [r.reason for r in records if "deploybench-nodes-" in r.reason]
    logs = list(out.rglob("logs/*.log"))
    assert len(logs) >= children, sorted(str(p.relative_to(out)) for p in logs)


def test_bench_of_a_model_file_runs_on_a_host_that_cannot_see_it(hosts):
    (hosts.folder / "models").mkdir(exist_ok=True)
    model = model_files.relu(hosts.folder / "models" / "relu.onnx")
    out = hosts.folder / "bench"
    suite = bench_suite(batch_sizes=(1, 4), threads=1, rounds=1).replace(budget=TINY)
    outcome = executor.start(plan_model(ModelRequest(model), suite, out), out,
                             backend=ClusterBackend(hosts.address, "each-node"))
    timed = [r for r in outcome.records if r.phase == "infer"]
    assert timed and all(r.ok for r in timed), [r.reason for r in timed if not r.ok]
    assert {r.info["node"]["name"] for r in timed} == {hosts.head, "node-b"}
    assert {r.info["node"]["hostname"] for r in timed} == {hosts.head, "node-b"}
    assert_all_home(outcome.records, out, children=2)
    assert (out / "nodes" / "node-b" / "logs").is_dir()
    # node-b ran the code the driver shipped (a runtime_env), in its measuring child too
    log = next((out / "nodes" / "node-b" / "logs").glob("*.log")).read_text()
    assert "deploybench code: " in log and "runtime_resources" in log, log[:500]
    run = json.loads((out / "results.json").read_text())["run"]
    assert set(run["nodes"]) == {hosts.head, "node-b"}
    assert all(env["peak_gflops"] > 0 and env["peak_threads"] == 1
               for env in run["nodes"].values())  # each node's own peak, measured there
    # the run is whole on the driver: the nodes' copies of it are gone
    assert not run_root(run_key(out)).exists()


def test_run_each_node_builds_once_and_measures_everywhere(hosts):
    suite_file = write_suite(hosts.folder / "s.toml", ["sklearn/seed-linreg"], ["cpu"], [1],
                             rounds=1)
    suite_file.write_text(suite_file.read_text().replace(
        "rounds = 1", 'rounds = 1\nrecipes = ["fp32", "ort-offline"]'))
    out = hosts.folder / "run"
    outcome = executor.start(plan_suite(load_suite(str(suite_file))), out,
                             backend=ClusterBackend(hosts.address, "each-node"))
    timed = [r for r in outcome.records if r.phase == "infer"]
    assert timed and all(r.ok for r in timed), [r.reason for r in timed if not r.ok]
    per_case: dict[tuple[str, str, str], set[str]] = {}
    for record in timed:
        per_case.setdefault((record.runtime, record.variant, record.recipe), set()).add(
            record.info["node"]["name"])
    assert per_case and all(nodes == {hosts.head, "node-b"} for nodes in per_case.values())
    # one build; the file made for a node's hardware made on each node, in its own folder
    assert len([r for r in outcome.records if r.phase == "train"]) == 1
    made = sorted(out.glob("nodes/*/artifacts/*/*.onnx"))
    assert {p.relative_to(out).parts[1] for p in made} == {hosts.head, "node-b"}, made
    assert_all_home(outcome.records, out, children=1 + 2 + 2 * 3)


def test_spread_keeps_every_round_of_a_case_on_one_node(hosts):
    suite_file = write_suite(hosts.folder / "s2.toml", ["sklearn/seed-linreg"], ["cpu"], [1],
                             rounds=3)
    out = hosts.folder / "spread"
    outcome = executor.start(plan_suite(load_suite(str(suite_file))), out,
                             backend=ClusterBackend(hosts.address, "spread"))
    timed = [r for r in outcome.records if r.phase == "infer"]
    assert timed and all(r.ok for r in timed)
    by_case: dict[tuple[str, str], set[str]] = {}
    for record in timed:
        by_case.setdefault((record.runtime, record.variant), set()).add(
            record.info["node"]["node_id"])
    assert all(len(nodes) == 1 for nodes in by_case.values()), by_case
    assert {r.round for r in timed} == {1, 2, 3}
    assert all(r.info["node"]["placement"] == "spread" for r in timed)


def test_loadgen_serves_on_both_nodes(hosts):
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed")
    from toolkit.plans.loadgen import loadgen_suite, plan_loadgen
    from toolkit.scenarios import ScenarioSettings

    (hosts.folder / "models").mkdir(exist_ok=True)
    model = model_files.relu(hosts.folder / "models" / "served.onnx")
    out = hosts.folder / "loadgen"
    # one serving path per node (a stream): the cluster's plumbing is what is tested here, and
    # twelve Server options on two nodes of a 2-core machine once starved a probe past 60 s
    settings = ScenarioSettings(scenario="singlestream", duration_s=0.2, p99_ms=20)
    suite = loadgen_suite(settings, threads=1, timeout_s=120)
    plan = plan_loadgen(str(model), suite, out, request=ModelRequest(model))
    outcome = executor.start(plan, out, backend=ClusterBackend(hosts.address, "each-node"))
    served = [r for r in outcome.records if r.phase == "scenario"]
    assert served and all(r.ok for r in served), [r.reason for r in served if not r.ok]
    assert {r.info["node"]["name"] for r in served} == {hosts.head, "node-b"}
    for record in served:  # LoadGen's own logs came back, each node's in its own folder
        logs = Path(record.info["logs"])
        assert logs.is_relative_to(out / "nodes") and list(logs.rglob("mlperf_log_detail.txt"))


def test_a_backend_kept_to_one_node_runs_every_plan_there(hosts):
    """`advise` keeps one study on one machine: every step of every plan its backend runs goes
    to the node it names, or to the one it chose when the cluster opened (the driver's)."""
    from toolkit.backends.cluster import ONE_NODE

    (hosts.folder / "models").mkdir(exist_ok=True)
    model = model_files.relu(hosts.folder / "models" / "kept.onnx")
    suite = bench_suite(batch_sizes=(1,), threads=1, rounds=2).replace(budget=TINY)
    for node, expected in (("node-b", "node-b"), (ONE_NODE, hosts.head)):
        backend = ClusterBackend(hosts.address, "spread", node)
        for n in range(2):  # two plans, one backend: as advise's stages
            out = hosts.folder / f"kept-{expected}-{n}"
            outcome = executor.start(plan_model(ModelRequest(model), suite, out), out,
                                     backend=backend)
            timed = [r for r in outcome.records if r.phase == "infer"]
            assert timed and all(r.ok for r in timed), [r.reason for r in timed if not r.ok]
            assert {r.info["node"]["name"] for r in outcome.records
                    if "node" in r.info} == {expected}
            run = json.loads((out / "results.json").read_text())["run"]
            assert run["cluster"]["node"] == expected
    gone = ClusterBackend(hosts.address, "spread", "node-z")
    with pytest.raises(BadInputError, match="the node 'node-z' this run keeps to is not in"):
        executor.start(plan_model(ModelRequest(model), suite, hosts.folder / "gone"),
                       hosts.folder / "gone", backend=gone)


def test_one_node_is_the_drivers_where_it_is_one_and_takes_spread_only():
    from toolkit.backends.cluster import ONE_NODE, choose_node

    assert choose_node({"node-b": "b1", "here": "h1"}, None, "here") == "here"
    assert choose_node({"node-b": "b1", "gpu-1": "g1"}, None, "laptop") == "gpu-1"
    # two nodes on the driver's host are labelled apart: Ray's own node id tells which
    assert choose_node({"vm-aaaaaa": "aa", "vm-bbbbbb": "bb"}, "bb", "vm") == "vm-bbbbbb"
    with pytest.raises(BadInputError, match="takes spread"):
        ClusterBackend("auto", "each-node", ONE_NODE)


def test_a_stopped_cluster_run_leaves_no_child_and_resumes_without_a_shared_disk(hosts):
    import psutil

    suite = write_suite(hosts.folder / "s3.toml", ["sklearn/seed-linreg"], ["cpu"], [1],
                        rounds=3)
    out = hosts.folder / "stopped"
    env = ray_nodes.environment()
    command = [sys.executable, "-m", "toolkit.cli", "run", "--history",
               str(hosts.folder / "h.sqlite")]
    def ours() -> list[psutil.Process]:  # spawned children, fork servers and their children,
        # under this test's process (the nodes are its children; a test running beside this
        # one, under pytest -n, has servers of its own)
        return [p for p in psutil.process_iter(["cmdline"]) if any(
            name in " ".join(p.info["cmdline"] or [])
            for name in ("toolkit.worker", "toolkit.forkserver")) and _under_us(p)]

    earlier = {p.pid for p in ours()}  # other runs' servers (this test process's own)
    proc = subprocess.Popen([*command, "--suite", str(suite), "--out", str(out), "--cluster",
                             hosts.address, "--placement", "each-node"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    measuring: list[psutil.Process] = []
    while time.monotonic() < deadline and not measuring:  # the build done, a child measuring
        built = (out / "results.json").is_file() and json.loads(
            (out / "results.json").read_text() or "{}").get("records")
        found = [p for p in ours() if built and p.pid not in earlier]
        if any("toolkit.worker" in " ".join(p.info["cmdline"] or []) or _forked(p)
               for p in found):  # a child is measuring, not only a server waiting
            measuring = found
        time.sleep(0.1)
    assert measuring, "no measuring child started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    said = [line for line in err.splitlines() if ".so(" not in line and ".so.6(" not in line]
    assert proc.returncode == 130, "\n".join(said)[-3000:]  # not Ray's native stack frames
    _, alive = psutil.wait_procs(measuring, timeout=20)
    assert not alive, [p.cmdline() for p in alive]  # cancelled without force: child killed
    kept = json.loads((out / "results.json").read_text())
    assert kept["run"]["interrupted"] is True
    copies = run_root(run_key(out))
    assert copies.is_dir()  # kept for --resume, which checks each by digest before reuse
    again = subprocess.run([*command, "--resume", str(out)], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    done = json.loads((out / "results.json").read_text())
    assert not done["run"]["interrupted"]
    records = [Record.from_dict(r) for r in done["records"]]
    timed = [r for r in records if r.phase == "infer"]
    assert {(r.info["node"]["name"], r.round) for r in timed} == {
        (name, r) for name in (hosts.head, "node-b") for r in (1, 2, 3)}
    assert_all_home(records, out, children=1 + 2 * 2 * 3)
    assert not copies.exists()


def _under_us(process) -> bool:
    """Whether `process` descends from this test process."""
    import psutil

    try:
        return any(parent.pid == os.getpid() for parent in process.parents())
    except psutil.Error:
        return False


def _forked(process) -> bool:
    """A child a fork server forked (it carries the server's command line)."""
    import psutil

    try:
        return "toolkit.forkserver" in " ".join(process.parent().cmdline())
    except (psutil.Error, AttributeError):
        return False


def test_joining_without_the_token_or_where_nothing_listens_says_so_in_one_line(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'deploybench[cluster]')")
    if ray_nodes.why_not():
        pytest.skip(ray_nodes.why_not())
    home = tmp_path / "home"  # the head's ~/.ray stays out of the user's home
    home.mkdir()
    address, head = ray_nodes.start_head(tmp_path / "logs", "token", HOME=str(home),
                                         RAY_AUTH_TOKEN="0123456789abcdef0123456789abcdef")
    try:
        env = {k: v for k, v in ray_nodes.environment().items()
               if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
        env["HOME"] = str(home)
        for where, needle in ((address, "RAY_AUTH_TOKEN"),
                              (f"127.0.0.1:{ray_nodes.free_port()}", "nothing answers there")):
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", "--cluster", where,
                                   "--out", str(tmp_path / "o"), "--history",
                                   str(tmp_path / "h")], env=env, capture_output=True,
                                  text=True, timeout=180)
            errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
            assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
            assert needle in errors[0] and where in errors[0], errors
            assert "Traceback" not in proc.stderr
            assert time.monotonic() - started < 90
    finally:
        ray_nodes.stop(head)


def test_without_ray_cluster_says_which_extra_to_install(monkeypatch):
    import importlib.util

    from toolkit.backends import cluster
    from toolkit.errors import BadInputError

    real = importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(BadInputError, match=r"pip install 'deploybench\[cluster\]'"):
        cluster.connect("local")


def test_a_node_with_other_framework_versions_is_refused_by_name():
    from toolkit.backends.cluster import refuse_differences
    from toolkit.errors import BadInputError

    driver = {"python": "3.11.7", "versions": {"torch": "2.14.1", "numpy": "2.4.6",
                                               "onnxruntime-gpu": "1.31.1", "typer": "0.29"}}
    refuse_differences(driver, {"a": driver})
    # a CPU node beside a GPU driver runs the same runtime; the CLI's own library is no matter
    refuse_differences(driver, {"cpu-1": {"python": "3.11.7", "versions": {
        "torch": "2.14.1", "numpy": "2.4.6", "onnxruntime": "1.31.1", "typer": "0.30"}}})
    with pytest.raises(BadInputError, match=r"torch 2\.14\.1 here, 2\.13\.0 on gpu-1"):
        refuse_differences(driver, {"gpu-1": {"python": "3.11.7", "versions": {
            "torch": "2.13.0", "numpy": "2.4.6", "onnxruntime-gpu": "1.31.1"}}})


def test_labels_are_hostnames_and_stay_apart_where_hosts_repeat(monkeypatch):
    ray = pytest.importorskip("ray")
    from toolkit.backends import cluster

    fake = [{"Alive": True, "NodeManagerHostname": "vm", "NodeID": "bbbbbbbb", "Resources": {
        "deploybench": 1}}, {"Alive": True, "NodeManagerHostname": "vm", "NodeID": "aaaaaaaa",
                             "Resources": {"deploybench": 1}},
            {"Alive": True, "NodeManagerHostname": "gpu", "NodeID": "cccccccc",
             "Resources": {"deploybench": 1, "GPU": 1}}]
    monkeypatch.setattr(ray, "nodes", lambda: fake)
    first = {n.node_id: n.name for n in cluster.nodes()}
    monkeypatch.setattr(ray, "nodes", lambda: list(reversed(fake)))
    assert {n.node_id: n.name for n in cluster.nodes()} == first  # not by order of listing
    assert first == {"aaaaaaaa": "vm-aaaaaa", "bbbbbbbb": "vm-bbbbbb", "cccccccc": "gpu"}
