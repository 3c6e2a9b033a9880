"""`advise --cluster` across the kinds of node: how nodes are grouped into kinds, how the kinds
are ranked by cost per million (ties where the cost intervals overlap), bad prices, and one
whole run on two Ray nodes of different kinds that share no disk (the second limited to one
core by its CPU affinity)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import ray_nodes
from toolkit import kinds
from toolkit.advise import Confirmed, Request
from toolkit.backends.cluster import Node, kind_named
from toolkit.confirmations import Held
from toolkit.errors import BadInputError
from toolkit.report import kinds as kinds_report
from toolkit.rounds import OptionPeaks
from toolkit.search import Config, Outcome

XEON = {"cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "usable_cores": 2,
        "physical_cores": 2, "memory_gb": 23.5, "gpus": [], "hostname": "vm-1"}


def test_a_nodes_kind_is_its_resource_else_what_it_says_of_itself():
    assert kind_named({"deploybench": 1, "deploybench-kind-big": 1, "CPU": 2}) == "big"
    assert kind_named({"deploybench": 1, "deploybench-kind-": 1}) == ""
    assert kinds.derived_kind(XEON) == "intel-xeon-platinum-8375c-2core-24gb"
    gpu = {**XEON, "gpus": ["NVIDIA H100 80GB HBM3, 81559 MiB"]}
    assert kinds.derived_kind(gpu) == ("intel-xeon-platinum-8375c-2core-24gb-1x-nvidia-h100-80gb"
                                       "-hbm3")
    nodes = [Node("a1", "vm-1", 0, "vm-1", "big"), Node("b1", "vm-2", 0, "vm-2", "small"),
             Node("c1", "vm-3", 0, "vm-3", ""), Node("d1", "vm-4", 0, "vm-4", "")]
    envs = {"vm-1": XEON, "vm-2": {**XEON, "usable_cores": 1, "hostname": "vm-2"},
            "vm-3": {**XEON, "hostname": "vm-3"}, "vm-4": {**XEON, "hostname": "vm-4"}}
    plans = {p.kind: p for p in kinds.plan_kinds(nodes, envs)}
    assert sorted(plans) == ["big", "intel-xeon-platinum-8375c-2core-24gb", "small"]
    same = plans["intel-xeon-platinum-8375c-2core-24gb"]  # two nodes alike: one kind
    assert same.nodes == ("vm-3", "vm-4") and same.node == "vm-3" and same.cores == 2
    assert plans["small"].cores == 1 and plans["small"].host == "vm-2"
    # a resume finds each kind on a node of it now; a kind with none is gone
    stored = {p.kind: p.to_dict() for p in plans.values()}
    again = {p.kind: p for p in kinds.replan_kinds(stored, nodes[1:], envs)}
    assert again["big"].gone and not again["small"].gone
    assert again["intel-xeon-platinum-8375c-2core-24gb"].node == "vm-3"


def test_prices_name_kinds_the_cluster_has():
    assert kinds.prices_by_kind((("big", 0.2), ("small", 0.05)), ["big", "small"]) == {
        "big": 0.2, "small": 0.05}
    assert kinds.prices_by_kind((("", 0.3),), ["only"]) == {"only": 0.3}
    with pytest.raises(BadInputError, match=r"--price medium=0.1: no node of the cluster is "
                                            r"of kind 'medium' \(its kinds: big, small\)"):
        kinds.prices_by_kind((("medium", 0.1),), ["big", "small"])
    with pytest.raises(BadInputError, match="big was priced twice"):
        kinds.prices_by_kind((("big", 0.2), ("big", 0.3)), ["big", "small"])
    with pytest.raises(BadInputError, match="give each one's as --price KIND=USD_PER_HOUR"):
        kinds.prices_by_kind((("", 0.1),), ["big", "small"])
    with pytest.raises(BadInputError, match="--price big=-1: give USD per hour > 0"):
        Request("m.onnx", 5.0, prices=(("big", -1.0),))


def held(peak: float, low: float, high: float, p99: float = 3.0) -> Held:
    config = Config("onnxruntime fp32", 1, 2, 1, None, (("graph_optimization", "all"),))
    rounds = tuple(Confirmed(config, "searched", "f", peak, "sustained", p99, (1.9, 2.1),
                             predicted=Outcome(peak * 1.2, 2.0, 0.0, None), round=n)
                   for n in (1, 2, 3))
    return Held(config, "searched", rounds,
                OptionPeaks("x", {1: peak, 2: peak, 3: peak}, {1: peak}, peak, low, high,
                            "interval"))


def study(kind: str, cores: int, price: float | None, pick: Held | None) -> kinds.Study:
    plan = kinds.KindPlan(kind, (f"{kind}-1",), f"{kind}-1", f"{kind}-host", cores)
    found = SimpleNamespace(pick=pick) if pick else None  # an Advice, as far as ranking reads it
    return kinds.Study(plan, price, found, why=None if pick else "its trials failed")  # type: ignore[arg-type]


def test_kinds_are_ranked_by_cost_per_million_at_the_rate_needed_with_ties_and_no_price():
    # big serves 2x small's rate at 4x its price: small is cheaper per million
    big = study("big", 2, 0.20, held(20_000, 19_000, 21_000))
    small = study("small", 1, 0.05, held(10_000, 9_500, 10_500))
    ranking = kinds.rank([big, small], 100_000)
    assert [r.kind for r in ranking] == ["small", "big"] and not ranking[0].ties
    assert ranking[0].machines == (10, 10, 11)  # at its peak; at its interval's ends
    assert ranking[0].cost == pytest.approx(10 * 0.05 / (100_000 * 3600) * 1e6)
    assert ranking[0].cost_low <= ranking[0].cost <= ranking[0].cost_high
    # wide intervals that overlap: a tie, and the answer says what would separate them
    vague = study("small", 1, 0.05, held(10_000, 5_000, 12_000))
    tied = kinds.rank([big, vague], 100_000)
    assert tied[0].kind == "small" and tied[0].ties == ("big",)
    fleet = kinds.Fleet(Request("m.onnx", 5.0, need_qps=100_000), Path("."), "auto",
                        [big, vague])
    line = kinds_report.headline(fleet)
    assert "a tie with big" in line and "cheaper for certain at a price under $" in line
    # a pick that held in one round has no interval: no verdict against any priced kind
    once = study("small", 1, 0.05, dataclasses.replace(
        held(10_000, 9_500, 10_500), figure=OptionPeaks(
            "x", {1: 10_000.0}, {1: 10_000.0}, 10_000.0, 10_000.0, 10_000.0, "one round")))
    alone = kinds.rank([big, once], 100_000)
    assert alone[0].kind == "small" and alone[0].ties == ("big",)
    assert alone[0].cost_low is None and alone[0].machines == (10, 10, 10)
    line = kinds_report.headline(kinds.Fleet(Request("m.onnx", 5.0, need_qps=100_000),
                                             Path("."), "auto", [big, once]))
    assert "a tie with big" in line and "held in one round only" in line
    # no price: after the priced kinds, by peak per core, and said; no pick: last, with why
    free = study("free", 4, None, held(30_000, 29_000, 31_000))
    broken = study("broken", 2, 0.01, None)
    order = kinds.rank([broken, free, big, small], 100_000)
    assert [r.kind for r in order] == ["small", "big", "free", "broken"]
    assert order[2].per_core == pytest.approx(7_500) and order[3].per_core is None
    fleet = kinds.Fleet(Request("m.onnx", 5.0, need_qps=100_000), Path("."), "auto",
                        [free])
    assert "ranked by peak per core" in kinds_report.headline(fleet)
    rows = kinds_report.rows(kinds.Fleet(Request("m.onnx", 5.0, need_qps=100_000), Path("."),
                                         "auto", [broken, free, big, small]))
    assert rows[-1][0] == "-" and rows[-1][-1] == "its trials failed"
    # a GPU kind is advised on its CPU, and its row says so, with why CUDA was not used
    for facts, said in (({"gpus": ["NVIDIA H100"], "cuda": "usable"},
                         "advised on its CPU: advise does not search CUDA options yet"),
                        ({"ray_gpus": 1.0, "cuda": "CUDAExecutionProvider not usable: no "
                                                   "CUDA-capable device is detected"},
                         "advised on its CPU: CUDA is not usable on g (CUDAExecutionProvider "
                         "not usable: no CUDA-capable device is detected)")):
        gpu = kinds.Study(kinds.KindPlan("gpu", ("g",), "g", "g", 8, facts), 1.0,
                          SimpleNamespace(pick=held(50_000, 49_000, 51_000)))  # type: ignore[arg-type]
        row = kinds_report.rows(kinds.Fleet(Request("m.onnx", 5.0), Path("."), "auto", [gpu]))
        assert row[0][-1] == said
    assert kinds.KindPlan("cpu", ("c",), "c", "c", 2, {"gpus": []}).gpu_note is None
    assert "<svg" in kinds_report.cost_chart_svg(kinds.Fleet(
        Request("m.onnx", 5.0, need_qps=100_000), Path("."), "auto", [big, small]))


def test_each_kind_is_asked_on_its_own_cores_and_share_of_the_budget():
    plan = kinds.KindPlan("small", ("b",), "b", "h", 1)
    asked = kinds.kind_request(Request("m.onnx", 5.0, threads=(1, 2), budget_s=600,
                                       prices=(("small", 0.05), ("big", 0.2))), plan, 2)
    assert asked.cores == 1 and asked.threads == (1,) and asked.price == 0.05
    assert asked.budget_s == 300 and asked.prices == ()


@dataclass(frozen=True)
class Kinds:
    address: str
    folder: Path  # node-b sees an empty tmpfs here


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory: pytest.TempPathFactory):
    """The head, of kind `big` (both cores), and node-b, of kind `small`: one core (its CPU
    affinity), its own hostname, and no view of the driver's folders."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'deploybench[cluster]')")
    why = ray_nodes.why_not()
    if why:
        pytest.skip(why)
    from toolkit import executor
    from toolkit.backends.cluster import disconnect

    root = tmp_path_factory.mktemp("kinds")
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    address, head = ray_nodes.start_head(
        root / "logs", resources='{"deploybench": 1, "deploybench-kind-big": 1}')
    try:
        checkout = Path(executor.__file__).resolve().parents[1]
        node = ray_nodes.start_hidden_node(
            address, [root / "driver", checkout / "toolkit", checkout / "exporters"],
            root / "logs", resources='{"deploybench": 1, "deploybench-kind-small": 1}',
            cpus="0")
    except BaseException:
        ray_nodes.stop(head)
        raise
    yield Kinds(address, root / "driver")
    disconnect()
    ray_nodes.stop(node)
    ray_nodes.stop(head)
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def advise(*args: str):
    from typer.testing import CliRunner

    from toolkit.cli import app

    return CliRunner().invoke(app, ["advise", *args])


def test_a_price_for_a_kind_no_node_has_is_one_line_and_exit_2(two_kinds, tmp_path):
    from tests.test_loadgen import mlp

    model = mlp(tmp_path / "mlp.onnx")
    out = tmp_path / "refused"
    result = advise(str(model), "--p99-ms", "5", "--cluster", two_kinds.address,
                    "--price", "medium=0.1", "--out", str(out))
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no node of the cluster is of kind 'medium' (its kinds: big, " \
        "small)" in error[0], result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.slow
def test_both_kinds_are_advised_side_by_side_and_the_cheaper_per_million_ranked_first(
        two_kinds):
    pytest.importorskip("mlperf_loadgen")
    from tests.test_loadgen import mlp

    (two_kinds.folder / "models").mkdir(parents=True, exist_ok=True)
    # enough arithmetic a row (about 8 MFLOP) that a core more serves more: a tinier model's
    # rate is bound by Python's serial costs, which one core pays as fast as two
    model = mlp(two_kinds.folder / "models" / "mlp.onnx", features=1024, hidden=4096)
    out = two_kinds.folder / "fleet"
    # the console script, as a user runs it
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "advise", str(model), "--p99-ms", "20",
         "--threads", "1", "--recipes", "fp32", "--budget", "2m", "--no-controls",
         "--target-qps", "100000", "--cluster", two_kinds.address, "--price", "big=0.20",
         "--price", "small=0.05", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=ray_nodes.environment())
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads((out / "advice.json").read_text())
    studies = answer["kinds"]
    assert sorted(studies) == ["big", "small"]
    assert studies["big"]["cores"] == 2 and studies["small"]["cores"] == 1
    assert studies["small"]["node"] == "node-b"
    assert studies["big"]["node"] == socket.gethostname()
    picks = {kind: s["study"]["pick"] for kind, s in studies.items()}
    assert all(p and p["sustained"] for p in picks.values()), {k: s["why"]
                                                              for k, s in studies.items()}
    # the one-core kind serves less, but at a quarter of the price costs less per million
    assert picks["small"]["peak_qps"] < picks["big"]["peak_qps"]
    assert answer["ranking"][0]["kind"] == "small"
    assert answer["ranking"][0]["usd_per_million"] <= answer["ranking"][1]["usd_per_million"]
    assert answer["answer"].startswith(f"serve {model} on small")
    assert f"serve {model} on small" in result.stdout
    # each kind's whole study in its own folder, every stage on its own node (no shared disk:
    # what node-b wrote came back through the object store)
    for kind, node in (("big", socket.gethostname()), ("small", "node-b")):
        folder = out / "kinds" / kind
        assert (folder / "advice.json").is_file() and (folder / "advice.html").is_file()
        ran = {r["info"]["node"]["name"]
               for stage in folder.rglob("results.json")
               for r in json.loads(stage.read_text())["records"] if "node" in r["info"]}
        assert ran == {node}, (kind, ran)
        # the serial costs were measured on the kind's node, for its cores
        costs = json.loads((folder / "serial-costs.json").read_text())
        assert f"| {studies[kind]['cores']} cores used |" in costs["machine"]
    # the two studies ran at the same time, not one after the other (where each of their
    # stages falls depends on how long the other's took: not asserted)
    spans = {kind: [(r["info"]["node"]["started"], r["info"]["node"]["ended"])
                    for stage in (out / "kinds" / kind).rglob("results.json")
                    for r in json.loads(stage.read_text())["records"] if "node" in r["info"]]
             for kind in ("big", "small")}
    assert max(e for _, e in spans["big"]) > min(s for s, _ in spans["small"])
    assert max(e for _, e in spans["small"]) > min(s for s, _ in spans["big"])
    assert "Which machine should serve it?" in (out / "advice.md").read_text()
    assert "<svg" in (out / "advice.html").read_text()
    # --resume of the finished run measures nothing again and gives the same ranking
    stages = {p: p.read_text() for p in (out / "kinds").rglob("results.json")}
    again = subprocess.run([sys.executable, "-m", "toolkit.cli", "advise", "--resume", str(out)],
                           capture_output=True, text=True, timeout=300,
                           env=ray_nodes.environment())
    assert again.returncode == 0, again.stderr[-3000:]
    assert [r["kind"] for r in json.loads((out / "advice.json").read_text())["ranking"]] == [
        "small", "big"]
    assert {p: p.read_text() for p in (out / "kinds").rglob("results.json")} == stages


def test_a_price_by_kind_without_a_cluster_is_refused_in_one_line(tmp_path):
    from tests.test_loadgen import mlp

    model = mlp(tmp_path / "mlp.onnx")
    result = advise(str(model), "--p99-ms", "5", "--price", "big=0.2", "--out",
                    str(tmp_path / "out"))
    assert result.exit_code == 2 and "--price big=0.2: a price by kind of node needs " \
        "--cluster" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_kinds_on_one_host_run_one_after_another_and_other_hosts_side_by_side():
    import threading
    import time

    spans: dict[str, tuple[float, float]] = {}

    def work(plan: kinds.KindPlan) -> kinds.Study:
        started = time.monotonic()
        time.sleep(0.3)
        spans[plan.kind] = (started, time.monotonic())
        return kinds.Study(plan, why="done")

    plans = [kinds.KindPlan(k, (k,), k, host, 1) for k, host in
             (("a", "vm-1"), ("b", "vm-1"), ("c", "vm-2"))]
    studies, interrupted = kinds.advise_side_by_side(plans, work, threading.Event())
    assert [s.plan.kind for s in studies] == ["a", "b", "c"] and not interrupted
    assert spans["a"][1] <= spans["b"][0] or spans["b"][1] <= spans["a"][0]  # one host
    assert spans["c"][0] < spans["a"][1] and spans["a"][0] < spans["c"][1]  # two hosts


def test_ctrl_c_stops_every_kind_and_keeps_each_ones_study():
    """Ctrl-C lands in the main thread while it waits for the kinds' threads (here raised
    where it waits, as the signal would be): every kind is told to stop, and each one's study
    comes back."""
    import threading

    stop = threading.Event()
    begun = threading.Barrier(3)

    def work(plan: kinds.KindPlan) -> kinds.Study:  # a kind's stages, until told to stop
        begun.wait(timeout=10)
        stop.wait(timeout=30)
        return kinds.Study(plan, why="interrupted", interrupted=stop.is_set())

    pressed = []

    def join(thread: threading.Thread) -> None:
        if not pressed:
            begun.wait(timeout=10)
            pressed.append(True)
            raise KeyboardInterrupt
        thread.join(0.2)

    plans = [kinds.KindPlan(k, (k,), k, k, 1) for k in ("a", "b")]
    studies, interrupted = kinds.advise_side_by_side(plans, work, stop, join)
    assert interrupted and stop.is_set()
    assert [(s.plan.kind, s.interrupted) for s in studies] == [("a", True), ("b", True)]


def test_a_kinds_backend_told_to_stop_ends_what_it_waits_for_as_ctrl_c(two_kinds):
    """Ctrl-C reaches only the main thread: each kind's backend, waiting on the cluster in its
    own thread, heeds the stop event instead, within a poll."""
    import threading
    import time

    from toolkit import environment
    from toolkit.backends.cluster import STOP_POLL_S, ClusterBackend

    cluster = ClusterBackend(two_kinds.address, "spread")
    cluster.open(1, environment.describe(with_providers=False))
    backend = cluster.kept_to("node-b")
    assert backend.call(environment.usable_cores) == 1  # node-b runs under taskset -c 0
    backend.stop = threading.Event()
    threading.Timer(1.0, backend.stop.set).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        backend.call(time.sleep, 60)
    assert time.monotonic() - started < 1.0 + 4 * STOP_POLL_S
