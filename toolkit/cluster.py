"""Many machines: a plan's steps run as Ray tasks, one measuring step per node at a time.

Every node offers one unit of the custom resource `deploybench` (`ray start --resources
'{"deploybench": 1}'`); each task asks for it (and for a GPU when its case is a CUDA case), so
two measurements never share a node. Inside the task the step runs as it does locally: a fresh
child process with a timeout, so cold start stays cold and a crash costs one case. Tasks are
never retried (`max_retries=0`): a failure is a `failed` record. Each record says where it ran
(`info.node`), and each node's environment is captured once.

    local             a Ray cluster started on this machine (one node), for trying it out
    auto              the cluster `ray start` made on this machine, or $RAY_ADDRESS
    ray://HOST:PORT   a running cluster's client address (HOST:PORT, its GCS address, too)

This module imports Ray only inside its functions: Ray is the optional `cluster` extra.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.errors import BadInputError
from toolkit.results import Record

log = logging.getLogger(__name__)

RESOURCE = "deploybench"
PLACEMENTS = ("spread", "each-node")
MISSING = "--cluster needs Ray: install it with pip install 'deploybench[cluster]'"


@dataclass(frozen=True)
class Node:
    node_id: str
    host: str  # hostname, or the node's address where that is all Ray knows
    gpus: float

    name: str = ""  # the node's label: its host, numbered where hosts repeat (see `nodes`)


def connect(address: str) -> list[Node]:
    """Join (or, for `local`, start) the cluster; its nodes that offer the `deploybench`
    resource. BadInputError where Ray is missing, the address is wrong, or no node offers it."""
    if importlib.util.find_spec("ray") is None:
        raise BadInputError(MISSING)
    import ray

    if not ray.is_initialized():
        import signal

        from toolkit.runners.onnxruntime import captured_output

        ours = signal.getsignal(signal.SIGTERM)
        try:
            with captured_output() as said:  # Ray's notices on connecting: kept from the user
                _init(ray, address)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise BadInputError(f"--cluster {address}: cannot join that Ray cluster ({exc}); "
                                "give local, auto or ray://HOST:PORT") from None
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


def _init(ray: Any, address: str) -> None:
    if address == "local":
        from toolkit.suite import default_threads

        # address="local": always a new cluster, never one already running on this machine
        ray.init(address="local", num_cpus=default_threads(), resources={RESOURCE: 1},
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)


def nodes() -> list[Node]:
    import ray

    found = sorted((n.get("NodeManagerHostname") or n.get("NodeManagerAddress", "?"),
                     n["NodeID"], float(n.get("Resources", {}).get("GPU", 0)))
                    for n in ray.nodes()
                    if n.get("Alive") and RESOURCE in n.get("Resources", {}))
    hosts = [host for host, _, _ in found]
    # A node's label is its hostname (stable across restarts, unlike Ray's node ids, so a
    # resumed each-node run finds its steps); nodes sharing a host are numbered.
    return [Node(node_id, host, gpus, host if hosts.count(host) == 1 else
                 f"{host}#{hosts[:index].count(host) + 1}")
            for index, (host, node_id, gpus) in enumerate(found)]


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _on_node(function: Callable[..., Any], *args: Any) -> Any:
    """The body of every task: run `function` here and say where 'here' is."""
    import socket
    import time

    import ray

    started = time.time()
    out = function(*args)
    where = {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
             "started": started, "ended": time.time()}
    if isinstance(out, Shipment):  # records to the driver; the files stay in the object store
        return (where, out.records), out.files
    return where, out


@dataclass(frozen=True)
class Shipment:
    """A step's records, and the files they name (path -> bytes), which the steps that read
    them get through Ray's object store: a node without them writes them at the same path."""

    records: list[Record]
    files: dict[str, bytes]


ARTIFACT_KEYS = ("artifact", "onnx", "inputs", "reference", "calibration")


def pack(records: Sequence[Record]) -> dict[str, bytes]:
    """The files (and the files of folders, a SavedModel) that `records` name."""
    from pathlib import Path

    files: dict[str, bytes] = {}
    for record in records:
        for key in ARTIFACT_KEYS:
            value = record.info.get(key)
            if not isinstance(value, str):
                continue
            path = Path(value)
            for item in ([path] if path.is_file() else
                         [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []):
                files.setdefault(str(item), item.read_bytes())
    return files


def unpack(files: Mapping[str, bytes]) -> None:
    """Write the shipped files this node lacks (same absolute paths as where they were made)."""
    from pathlib import Path

    for name, data in files.items():
        path = Path(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(data)
            partial.replace(path)


def submit(function: Callable[..., Any], *args: Any, node: Node | None = None,
           gpu: bool = False, ships: bool = False) -> Any:
    """`function(*args)` as a Ray task holding the node's `deploybench` unit (pinned to `node`
    when given); returns the reference of (where, result), or with `ships` (a function that
    returns a Shipment) the references of (where, records) and of the files."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {"resources": {RESOURCE: 1}, "num_cpus": 0, "max_retries": 0,
                               "num_gpus": 1 if gpu else 0, "num_returns": 2 if ships else 1}
    if node is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
    task = ray.remote(_on_node).options(**options)
    return task.remote(function, *args)


def wait(pending: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """The references that finished (at least one), and those still running."""
    import ray

    done, rest = ray.wait(list(pending), num_returns=1)
    return list(done), list(rest)


def result(reference: Any) -> tuple[dict[str, Any], Any]:
    """(where and when the task ran, what it returned) or, for a task that crashed, ({},
    the error)."""
    import ray

    try:
        return ray.get(reference)
    except (ray.exceptions.RayError, Exception) as exc:  # a crashed worker, a lost node
        return {}, exc


def cancel(pending: Sequence[Any]) -> None:
    import ray

    for reference in pending:
        try:
            ray.cancel(reference, force=True)
        except Exception:  # already finished, or its node is gone
            log.debug("could not cancel a task", exc_info=True)


def stamp(records: Sequence[Record], where: Mapping[str, Any]) -> list[Record]:
    """Each record with `info.node`: where (and when: the task's start and end, epoch
    seconds) it was measured."""
    return [dataclasses.replace(r, info={**r.info, "node": dict(where)}) for r in records]


def environments(found: Sequence[Node], peak_threads: int) -> dict[str, Mapping[str, Any]]:
    """Each node's environment (CPU, instruction set, GPU, versions, its peak at the run's
    thread count), taken on the node, by node label."""
    from toolkit import environment

    references = [submit(environment.describe, peak_threads, node=node) for node in found]
    out = {}
    for node, reference in zip(found, references, strict=True):
        _, env = result(reference)
        if not isinstance(env, BaseException):
            out[node.name] = {**env, "node_id": node.node_id}
    return out


def version_differences(envs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per package whose version differs between nodes: their numbers are then not
    comparable as measures of the hardware alone."""
    seen: dict[str, dict[str, str]] = {}
    for node_id, env in envs.items():
        host = str(env.get("hostname") or node_id[:8])
        for name, version in dict(env.get("versions", {})).items():
            seen.setdefault(name, {})[host] = str(version)
    return [f"{name}: " + ", ".join(f"{v} on {h}" for h, v in by_host.items())
            for name, by_host in seen.items() if len(set(by_host.values())) > 1]
