"""The cluster backend: each step as a Ray task on a node, one measuring step per node at a time.

    local             a Ray cluster started on this machine (one node), for trying it out
    auto              the cluster `ray start` made on this machine, or $RAY_ADDRESS
    ray://HOST:PORT   a running cluster's client address (HOST:PORT, its GCS address, too)

Every node offers one unit of the custom resource `deploybench` (`ray start --resources
'{"deploybench": 1}'`); each task asks for it (and for a GPU when its case is a CUDA case), so
two measurements never share a node. Inside the task the step runs as it does locally: a fresh
child process with a timeout. Tasks are never retried (`max_retries=0`): a failure is a
`failed` record. The nodes run the driver's deploybench (shipped as a `runtime_env`), and a node
whose frameworks differ from the driver's is refused by name. Files travel through the object
store (`toolkit.backends.files`): no node reads or creates a driver path.

    spread      each step on any free node; a case's rounds on the node of its first round
    each-node   every measuring step on every node, its label naming the node

This module imports Ray only inside its functions: Ray is the optional `cluster` extra.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import environment
from toolkit.backends import Finished
from toolkit.backends.files import (
    NodeFolder,
    Store,
    node_root,
    receive,
    relocate,
    remove_node_folders,
    run_root,
)
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.plans.steps import Context, OnNode, Step, fill_missing, on_every_node
from toolkit.results import LOST, Record, ResultsFile

log = logging.getLogger(__name__)

RESOURCE = "deploybench"
KIND_RESOURCE = "deploybench-kind-"  # + NAME: the node's kind, as `advise` groups the nodes
PLACEMENTS = ("spread", "each-node")
MISSING = "--cluster needs Ray: install it with pip install 'deploybench[cluster]'"
ARTIFACT_KEYS = ("artifact", "onnx", "inputs", "reference", "calibration")
CANCEL_WAIT_S = 20.0  # how long cancelled tasks get to kill their children
FINISH_WAIT_S = 60.0  # how long the nodes get to remove their folders of a finished run
KEEP_VARIABLE = "DEPLOYBENCH_KEEP_NODE_FOLDERS"  # set (to 1): a run's node folders stay
WAIT_VARIABLE = "RAY_gcs_server_port_wait_time_s"
STOP_POLL_S = 0.5  # how often a backend told to stop from another thread looks


@dataclass(frozen=True)
class Node:
    node_id: str
    host: str  # hostname, or the node's address where that is all Ray knows
    gpus: float
    name: str = ""  # its label: the host, with the start of its node id where hosts repeat
    kind: str = ""  # NAME of its `deploybench-kind-NAME` resource, where it offers one


ONE_NODE = "one"  # a backend's `node`: every step on one node, chosen when the cluster opens


def choose_node(ids: Mapping[str, str], here_id: str | None, here: str) -> str:
    """The node a run kept to one node uses (`ids`: label -> Ray node id): the driver's own
    where it is a node (by Ray's node id, else its hostname as a label), else the first by
    label."""
    mine = [name for name, node_id in ids.items() if node_id == here_id]
    return mine[0] if mine else here if here in ids else sorted(ids)[0]


def check_placement(placement: str) -> str:
    if placement not in PLACEMENTS:
        raise BadInputError(f"--placement {placement!r}: choose {' or '.join(PLACEMENTS)}")
    return placement


def connect(address: str) -> list[Node]:
    """Join (or, for `local`, start) the cluster; its nodes that offer the `deploybench`
    resource. BadInputError where Ray is missing, the join fails (saying why), or no node
    offers the resource."""
    if importlib.util.find_spec("ray") is None:
        raise BadInputError(MISSING)
    import ray

    if not ray.is_initialized():
        from toolkit.runners.onnxruntime import captured_output

        ours = signal.getsignal(signal.SIGTERM)
        try:
            with captured_output() as said:  # Ray's notices on connecting: kept from the user
                _init(ray, address)
        except BadInputError:
            raise
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, its own types
            raise BadInputError(join_failure(address, exc)) from None
        finally:  # Ray installs its own SIGTERM handler, which would exit without our records
            if ours is not None:
                signal.signal(signal.SIGTERM, ours)
        log.debug("ray.init said: %s", " | ".join(said))
    found = nodes()
    if not found:
        raise BadInputError(
            f"--cluster {address}: no node offers the {RESOURCE!r} resource; start each node "
            f"with ray start ... --resources '{{\"{RESOURCE}\": 1}}'")
    return found


def join_failure(address: str, exc: BaseException) -> str:
    """One line that names why joining failed: an authentication token, or the address. Ray
    says "token" in the error's cause, not in the error (a plain ConnectionError)."""
    said = " ".join(f"{type(e).__name__}: {e}" for e in (exc, exc.__cause__) if e is not None)
    text = " ".join(said.split())
    if "token" in text.lower() or type(exc).__name__ == "AuthenticationError":
        return (f"--cluster {address}: the cluster wants its authentication token; set "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the head's token (its "
                "~/.ray/auth_token, or what its RAY_AUTH_TOKEN was) and try again")
    first = " ".join(str(exc).split()) or type(exc).__name__
    return (f"--cluster {address}: cannot join that Ray cluster ({first[:300]}); check the "
            "address (local, auto, HOST:PORT of the head's GCS, or ray://HOST:PORT) and that "
            "the head is running")


def _probe(address: str) -> None:
    """A HOST:PORT where nothing listens, said at once (Ray retries it for minutes)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise BadInputError(f"--cluster {address}: nothing answers there ({exc.strerror or exc}); "
                            "check the head's address and port (ray start --head printed "
                            "them)") from None


def _code() -> list[str]:
    """The folders of deploybench's own packages, which every node runs (a `runtime_env`)."""
    import exporters
    import toolkit

    return [str(Path(module.__file__).parent) for module in (toolkit, exporters)
            if module.__file__]


def _init(ray: Any, address: str) -> None:
    # On the nodes every child is spawned, as before fork servers (toolkit.forking): with them,
    # a cluster run stopped by SIGTERM could exit 1 with a stack of Ray's native code (not
    # understood yet); spawned, it does not.
    runtime_env = {"py_modules": _code(), "env_vars": {"DEPLOYBENCH_FORK": "0"}}
    if address == "local":
        from toolkit.suite import default_threads

        # address="local": always a new cluster, never one already running on this machine
        ray.init(address="local", num_cpus=default_threads(), resources={RESOURCE: 1},
                 include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)
    else:
        _probe(address)
        before = os.environ.get(WAIT_VARIABLE)
        os.environ[WAIT_VARIABLE] = "3"  # Ray's tries to reach the head: seconds, not minutes
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False,
                     runtime_env=runtime_env)
        finally:  # it also bounds how long a head started here may take: not left set
            if before is None:
                os.environ.pop(WAIT_VARIABLE, None)
            else:
                os.environ[WAIT_VARIABLE] = before


def nodes() -> list[Node]:
    import ray

    found = sorted((n.get("NodeManagerHostname") or n.get("NodeManagerAddress", "?"),
                    n["NodeID"], float(n.get("Resources", {}).get("GPU", 0)),
                    kind_named(n.get("Resources", {})))
                   for n in ray.nodes()
                   if n.get("Alive") and RESOURCE in n.get("Resources", {}))
    hosts = [host for host, _, _, _ in found]
    # A node's label is its hostname, stable across restarts; where hosts repeat, the start of
    # its node id, stable for the life of the cluster (numbering them would swap labels).
    return [Node(node_id, host, gpus, host if hosts.count(host) == 1 else f"{host}-{node_id[:6]}",
                 kind) for host, node_id, gpus, kind in found]


def kind_named(resources: Mapping[str, Any]) -> str:
    """The NAME of a node's `deploybench-kind-NAME` resource ("" where it offers none; the
    first by name where it offers several)."""
    return next((key.removeprefix(KIND_RESOURCE) for key in sorted(resources)
                 if key.startswith(KIND_RESOURCE) and len(key) > len(KIND_RESOURCE)), "")


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _where(started: float) -> dict[str, Any]:
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
            "started": started, "ended": time.time()}


def _describe(peak_threads: int) -> tuple[dict[str, Any], Any]:
    """On a node: where it is, and its environment (with its peak at the run's threads)."""
    from toolkit import busy

    started = time.time()
    state = busy.state()
    return _where(started), {**environment.describe(peak_threads=peak_threads),
                             "machine_state": state}


def run_on_node(step: Step, context: Context, files: Mapping[str, tuple[str, Any]],
                run_key: str) -> tuple[dict[str, Any], list[Record], dict[str, bytes]]:
    """The body of every step's task: the files it reads placed in this node's own folder, the
    step run there, and its records (paths rewritten to the driver's) and the files it wrote."""
    import ray

    # Cancelling a task interrupts it with SIGINT, which a node started from a script's
    # background job ignores: then the step could not kill its child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.time()
    folder = NodeFolder(node_root(run_key, ray.get_runtime_context().get_node_id()))
    driver_out = str(context.out_dir)
    to_node = folder.place(files, driver_out, ray.get)
    before = folder.snapshot()
    here = Context(context.suite, folder.run, relocate(dict(context.done), to_node))
    records = relocate(step, to_node).execute(here)
    back = {node_path: driver_path for driver_path, node_path in to_node.items()}
    return _where(started), relocate(records, back), folder.written(before)


def _called(function: Any, *args: Any) -> Any:
    """The body of `ClusterBackend.call`'s task: a cancel interrupts it (see `run_on_node`)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return function(*args)


class ClusterBackend:
    """The steps as Ray tasks (see the module's docstring)."""

    slots: int | None = None  # Ray queues them by the nodes' `deploybench` units

    def __init__(self, address: str, placement: str = "spread", node: str | None = None
                 ) -> None:
        """`node`: every step on that node (its label), or on one chosen when the cluster
        opens (ONE_NODE) and kept for every plan this backend runs, as `advise` needs (one
        study's trials and confirmations on one machine)."""
        self.address = address
        self.placement = check_placement(placement)
        self.node = node
        if node is not None and placement != "spread":
            raise BadInputError("--placement each-node measures on every node; a run kept to "
                                "one node takes spread")
        self._pending: dict[Any, tuple[Step, Context]] = {}
        self._nodes: list[Node] = []
        self._ids: dict[str, str] = {}
        self._envs: dict[str, Mapping[str, Any]] = {}
        self._store: Store | None = None
        self._run_key = ""
        self._out_dir = Path(".")
        # set from another thread (advise runs a kind of node in each): the run stops as on
        # Ctrl-C, at the next step's end or within STOP_POLL_S
        self.stop: threading.Event | None = None

    @property
    def nodes(self) -> list[Node]:
        """The cluster's nodes that offer the resource (after `open`)."""
        return list(self._nodes)

    @property
    def environments(self) -> dict[str, Mapping[str, Any]]:
        """Each node's environment, by label, described on the node (after `open`)."""
        return dict(self._envs)

    def kept_to(self, node: str) -> ClusterBackend:
        """A backend of this opened cluster that keeps every step on `node` (its label),
        sharing what `open` found (the nodes are not described again: that would wait for
        every node's unit, each busy with another kind's steps)."""
        import ray

        other = ClusterBackend(self.address, "spread", node)
        other._nodes, other._ids, other._envs = list(self._nodes), dict(self._ids), dict(
            self._envs)
        other._store = Store(ray.put)
        return other

    def call(self, function: Any, *args: Any) -> Any:
        """`function(*args)` run as a task on the node this backend keeps to, holding its
        `deploybench` unit (so no step measures beside it); what it returns or raises."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self.node not in self._ids:
            raise BadInputError(f"--cluster {self.address}: the node {self.node!r} is not in "
                                f"the cluster (its nodes: {', '.join(sorted(self._ids))})")
        reference = _remote(_called).options(
            resources={RESOURCE: 1}, num_cpus=0, max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(self._ids[self.node], soft=False)
        ).remote(function, *args)
        return self._get(reference)

    def _get(self, reference: Any) -> Any:
        import ray

        while not ray.wait([reference], timeout=STOP_POLL_S)[0]:
            if self.stop is not None and self.stop.is_set():
                ray.cancel(reference, force=False)
                raise KeyboardInterrupt
        try:
            return ray.get(reference)
        except Exception as exc:
            cause = getattr(exc, "cause", None) or exc
            raise cause from None

    def open(self, threads: int, driver: Mapping[str, Any]) -> None:
        """Join the cluster, describe its nodes (each measuring its own peak at `threads`) and
        refuse one whose frameworks differ from the driver's (`driver`: its environment)."""
        import ray

        if self._store is not None:
            return
        self._nodes = connect(self.address)
        self._ids = {n.name: n.node_id for n in self._nodes}
        self._envs = environments(self._nodes, threads)
        refuse_differences(driver, self._envs)
        self._store = Store(ray.put)

    def prepare(self, steps: Sequence[Step], results: ResultsFile) -> list[Step]:
        self.open(self._threads(steps, results), dict(results.run.get("environment") or {}))
        self._out_dir = results.path.parent
        self._run_key = run_key(self._out_dir)
        if self.node == ONE_NODE:
            import ray

            try:
                here_id = ray.get_runtime_context().get_node_id()
            except Exception:  # a client connection (ray://) has no node of its own
                here_id = None
            self.node = choose_node(self._ids, here_id, socket.gethostname())
        if self.node is not None and self.node not in self._ids:
            raise BadInputError(f"--cluster {self.address}: the node {self.node!r} this run "
                                f"keeps to is not in the cluster (its nodes: "
                                f"{', '.join(sorted(self._ids))}); start a new run")
        results.update_run(cluster={"address": self.address, "placement": self.placement,
                                    **({"node": self.node} if self.node else {})},
                           nodes={**dict(results.run.get("nodes") or {}), **self._envs})
        if self.placement != "each-node":
            return list(steps)
        return on_every_node(steps, [(n.name, n.node_id, n.gpus) for n in self._nodes])

    @staticmethod
    def _threads(steps: Sequence[Step], results: ResultsFile) -> int:
        suite = dict(results.run.get("suite") or {})
        return int(suite.get("threads") or 1)

    def submit(self, step: Step, context: Context) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        assert self._store is not None
        node_id = (self._ids[self.node] if self.node is not None
                   else self._ids.get(step.node, step.node_id) if isinstance(step, OnNode)
                   else self._pinned(step, context))
        gpu = step.gpu and (any(n.gpus for n in self._nodes) if node_id is None else
                            any(n.gpus for n in self._nodes if n.node_id == node_id))
        reads = [*step.reads(), *(str(r.info[key]) for records in context.done.values()
                                  for r in records if r.status != "skipped"
                                  for key in ARTIFACT_KEYS if isinstance(r.info.get(key), str))]
        options: dict[str, Any] = {"resources": {RESOURCE: 1}, "num_cpus": 0, "max_retries": 0,
                                   "num_gpus": 1 if gpu else 0}
        if node_id is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        files = self._store.ship(reads)
        reference = _remote(run_on_node).options(**options).remote(step, context, files,
                                                                   self._run_key)
        self._pending[reference] = (step, context)

    def _pinned(self, step: Step, context: Context) -> str | None:
        """The node of the step this one runs beside (a case's first round), found by its
        label, which outlives a restart of the cluster; None where that node is gone."""
        if step.pin is None:
            return None
        ids = {n.name: n.node_id for n in self._nodes}
        for record in context.done.get(step.pin, []):
            node = record.info.get("node")
            if isinstance(node, dict) and node.get("name") in ids:
                return ids[str(node["name"])]
        return None

    def wait(self) -> list[Finished]:
        import ray

        ready: list[Any] = []
        while not ready:
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=STOP_POLL_S)
            if not ready and self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt  # the executor cancels what runs, as on Ctrl-C
        out = []
        for reference in ready:
            step, context = self._pending.pop(reference)
            try:
                where, records, files = ray.get(reference)
            except Exception as exc:  # a crashed worker, a lost node, an error in the step
                cause = getattr(exc, "cause", None) or exc
                if isinstance(cause, DeploybenchError):  # the user's input: one line, as here
                    raise cause from None
                text = str(cause).strip().splitlines()
                why = (f"the Ray task failed: {type(cause).__name__}: "
                       f"{text[-1] if text else ''} (--resume runs it again)")
                where = {"name": step.node} if isinstance(step, OnNode) else {}
                made = [dataclasses.replace(r, info={**r.info, LOST: True})
                        for r in fill_missing(step.expects(context.suite), [], why)]
                out.append(Finished(step, self._stamp(made, where)))
                continue
            receive(files, self._out_dir)
            out.append(Finished(step, self._stamp(records, where)))
        return out

    def _stamp(self, records: Sequence[Record], where: Mapping[str, Any]) -> list[Record]:
        """Each record with `info.node`: where (and when: the task's start and end, epoch
        seconds) it ran, the node's label, and the placement that put it there."""
        names = {n.node_id: n.name for n in self._nodes}
        node = {**where, "name": names.get(str(where.get("node_id")),
                                           where.get("name") or where.get("hostname")),
                "placement": self.placement}
        return [dataclasses.replace(r, info={**r.info, "node": node}) for r in records]

    def finish(self) -> None:
        """Every node's folder of this run removed (the run is whole in the driver's folder),
        unless $DEPLOYBENCH_KEEP_NODE_FOLDERS is set; a node that does not answer keeps its
        copy, with a warning (each is private to its user, and a later run checks every file
        it reuses by digest)."""
        if os.environ.get(KEEP_VARIABLE) or not self._run_key or self._store is None:
            return
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = _remote(remove_node_folders)
        references = {task.options(resources={RESOURCE: 1}, num_cpus=0, max_retries=0,
                                   scheduling_strategy=NodeAffinitySchedulingStrategy(
                                       node.node_id, soft=False)).remote(self._run_key): node
                      for node in self._nodes if self.node in (None, node.name)}
        ready, left = ray.wait(list(references), num_returns=len(references),
                               timeout=FINISH_WAIT_S)
        failed = list(left)
        for reference in ready:
            try:
                ray.get(reference)
            except Exception:  # the node is gone: nothing of it to remove from here
                failed.append(reference)
        if failed:
            log.warning("the node folders of this run (%s) could not be removed on %s; they "
                        "are private to you, remove them by hand",
                        run_root(self._run_key),
                        ", ".join(references[r].name for r in failed))

    def cancel(self) -> None:
        """Cancel without force: the task gets KeyboardInterrupt, so the step kills its child;
        then wait a little for that to happen."""
        if not self._pending:
            return
        import ray

        for reference in self._pending:
            try:
                ray.cancel(reference, force=False)
            except Exception:  # already finished, or its node is gone
                log.debug("could not cancel a task", exc_info=True)
        ray.wait(list(self._pending), num_returns=len(self._pending), timeout=CANCEL_WAIT_S)
        self._pending.clear()


def run_key(out_dir: Path) -> str:
    """The name of a run's folders on the nodes: from the driver's host and results folder, so
    a resumed run finds its copies again and two drivers' runs keep apart."""
    return hashlib.sha1(f"{socket.gethostname()}:{out_dir}".encode()).hexdigest()[:12]


@functools.cache
def _remote(function: Any) -> Any:
    import ray

    return ray.remote(function)


def environments(found: Sequence[Node], peak_threads: int) -> dict[str, Mapping[str, Any]]:
    """Each node's environment (CPU, instruction set, GPU, versions, its peak at the run's
    thread count), taken on the node, by node label."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = _remote(_describe)
    references = [task.options(resources={RESOURCE: 1}, num_cpus=0, max_retries=0,
                               scheduling_strategy=NodeAffinitySchedulingStrategy(
                                   node.node_id, soft=False)).remote(peak_threads)
                  for node in found]
    out = {}
    for node, reference in zip(found, references, strict=True):
        try:
            _, env = ray.get(reference)
        except Exception as exc:  # it would get steps no one checked it can run
            cause = getattr(exc, "cause", None) or exc
            raise BadInputError(f"cluster node {node.name} could not describe itself "
                                f"({type(cause).__name__}: {cause}); check that deploybench's "
                                "frameworks are installed there") from None
        out[node.name] = {**env, "node_id": node.node_id}
    return out


# What a node must run at the driver's version: the frameworks and what they compute with
# (onnxruntime and onnxruntime-gpu are one runtime: a GPU node beside a CPU driver is the point)
COMPARED = ("numpy", "onnx", "onnxruntime", "scikit-learn", "skl2onnx", "tensorflow", "keras",
            "tf2onnx", "torch", "torchvision", "onnxscript")


def _frameworks(versions: Mapping[str, Any]) -> dict[str, str]:
    found = {k: str(v) for k, v in versions.items() if k in COMPARED}
    if "onnxruntime-gpu" in versions:
        found["onnxruntime"] = str(versions["onnxruntime-gpu"])
    return found


def refuse_differences(driver: Mapping[str, Any], envs: Mapping[str, Mapping[str, Any]]) -> None:
    """BadInputError naming each framework whose version on a node is not the driver's: the
    nodes run the driver's deploybench, but torch or TensorFlow cannot be shipped, and figures
    of different versions compare the software, not the machines."""
    mine = _frameworks(dict(driver.get("versions") or {}))
    lines = []
    for name, env in envs.items():
        theirs = _frameworks(dict(env.get("versions") or {}))
        for package in sorted(set(mine) | set(theirs)):
            if mine.get(package) != theirs.get(package):
                lines.append(f"{package} {mine.get(package, 'not installed')} here, "
                             f"{theirs.get(package, 'not installed')} on {name}")
        if driver.get("python") and env.get("python") and driver["python"] != env["python"]:
            lines.append(f"Python {driver['python']} here, {env['python']} on {name}")
    if lines:
        raise BadInputError("the cluster's nodes run other versions than this machine ("
                            + "; ".join(lines) + "): install the same versions on every node")
