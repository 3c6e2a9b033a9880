"""Which machine should serve it: `advise` across the kinds of node in a cluster.

A cluster's nodes are grouped into kinds. A node's kind is the NAME of the resource
`deploybench-kind-NAME` it was started with (`ray start --resources '{"deploybench": 1,
"deploybench-kind-big": 1}'`), else what its environment says of it (`derived_kind`: CPU
model, usable cores, memory, GPUs). Each kind is advised on one of its nodes, as a whole
`advise` study in a folder of its own (`kinds/<kind>/`: trials, calibration, search, paired
confirmations). Kinds whose nodes are on different hosts are advised side by side, a thread
each; kinds that share a host, one after another (each with its share of the budget).

The kinds are then ranked by cost per million queries at the rate the service needs
(`--target-qps`, also spelled `--need-qps`): the machines a kind needs at its pick's confirmed
peak, times its price (`--price KIND=USD_PER_HOUR`); the same at the ends of the peak's interval
gives the cost's interval, and two kinds whose cost intervals overlap are a tie (a pick that
held in one round has no interval: it ties with every priced kind). A kind with no price is
ranked after the priced ones, by peak per core.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import BadInputError, DeploybenchError

if TYPE_CHECKING:
    from toolkit.advise import Advice, Request
    from toolkit.confirmations import Held

log = logging.getLogger(__name__)

KINDS_FOLDER = "kinds"  # each kind's study: <run>/kinds/<kind>/


def derived_kind(env: Mapping[str, Any]) -> str:
    """A kind's name from what a node says of itself: its CPU model, usable cores, memory and
    GPUs, e.g. `intel-xeon-platinum-8375c-2core-24gb` (a name `--price` can take)."""
    cpu = re.sub(r"\((?:R|TM)\)|\bCPU\b|\bProcessor\b|@.*$|\b\d+-Core\b", " ",
                 str(env.get("cpu") or "cpu"), flags=re.IGNORECASE)
    name = _slug(cpu)[:40].strip("-") or "cpu"
    cores = env.get("usable_cores") or env.get("physical_cores") or env.get("logical_cores")
    name += f"-{cores}core" if cores else ""
    memory = env.get("memory_gb")
    name += f"-{round(float(memory))}gb" if memory else ""
    gpus = [str(g) for g in env.get("gpus") or []]
    if gpus:
        name += f"-{len(gpus)}x-{_slug(gpus[0].split(',')[0])[:24].strip('-')}"
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def folder_name(kind: str) -> str:
    """A kind's folder under kinds/ (a resource's NAME may hold any character)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", kind) or "_"


@dataclass(frozen=True)
class KindPlan:
    """A kind of node and where it is advised: on `node`, one of its `nodes` (labels)."""

    kind: str
    nodes: tuple[str, ...]
    node: str
    host: str  # the chosen node's hostname: kinds on one host are advised one after another
    cores: int  # usable on the chosen node
    facts: Mapping[str, Any] = field(default_factory=dict)  # CPU, memory, GPUs (as described)
    gone: bool = False  # on a resume: no node of this kind is in the cluster now

    @property
    def gpu_note(self) -> str | None:
        """What became of a GPU kind's GPU (advise searches CPU options only so far)."""
        if not self.facts.get("gpus") and not self.facts.get("ray_gpus"):
            return None
        cuda = self.facts.get("cuda")
        if cuda == "usable":
            return "advised on its CPU: advise does not search CUDA options yet"
        return (f"advised on its CPU: CUDA is not usable on {self.node} "
                f"({cuda or 'its providers were not described'})")

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes), "node": self.node, "host": self.host,
                "cores": self.cores, "facts": dict(self.facts)}

    @classmethod
    def from_dict(cls, kind: str, raw: Mapping[str, Any]) -> KindPlan:
        return cls(kind, tuple(str(n) for n in raw["nodes"]), str(raw["node"]),
                   str(raw["host"]), int(raw["cores"]), dict(raw.get("facts") or {}))


def _facts(env: Mapping[str, Any], ray_gpus: float = 0.0) -> dict[str, Any]:
    """What a kind's row says of its node: CPU, cores, memory, GPUs (as nvidia-smi and as Ray
    count them) and whether ONNX Runtime's CUDA provider is usable there (or why not)."""
    found = {key: env.get(key) for key in ("cpu", "usable_cores", "physical_cores",
                                           "memory_gb", "gpus", "hostname")}
    return {**found, "ray_gpus": ray_gpus,
            "cuda": (env.get("providers") or {}).get("cuda")}


def plan_kinds(nodes: Sequence[Any], envs: Mapping[str, Mapping[str, Any]]) -> list[KindPlan]:
    """The cluster's kinds (`nodes`: `toolkit.backends.cluster.Node`s; `envs`: each one's
    environment by label), each to be advised on its first node by label."""
    grouped: dict[str, list[str]] = {}
    gpus = {node.name: float(node.gpus or 0.0) for node in nodes}
    for node in nodes:
        env = envs.get(node.name, {})
        grouped.setdefault(node.kind or derived_kind(env), []).append(node.name)
    folders: dict[str, str] = {}
    for kind in sorted(grouped):
        other = folders.setdefault(folder_name(kind), kind)
        if other != kind:
            raise BadInputError(f"the kinds {other!r} and {kind!r} would share the folder "
                                f"{KINDS_FOLDER}/{folder_name(kind)}; rename one's "
                                "deploybench-kind-NAME resource (letters, digits, . _ -)")
    plans = []
    for kind, labels in sorted(grouped.items()):
        chosen = sorted(labels)[0]
        env = envs.get(chosen, {})
        plans.append(KindPlan(kind, tuple(sorted(labels)), chosen,
                              str(env.get("hostname") or chosen),
                              int(env.get("usable_cores") or env.get("physical_cores") or 1),
                              _facts(env, gpus.get(chosen, 0.0))))
    return plans


def replan_kinds(stored: Mapping[str, Any], nodes: Sequence[Any],
                 envs: Mapping[str, Mapping[str, Any]]) -> list[KindPlan]:
    """A resumed run's kinds, as stored, each on a node of its kind in the cluster now (the
    one it was advised on where it is still there); `gone` where none is."""
    now = {plan.kind: plan for plan in plan_kinds(nodes, envs)}
    plans = []
    for kind, raw in sorted(stored.items()):
        try:
            before = KindPlan.from_dict(kind, raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"advise-request.json: kind {kind!r} is not what advise writes "
                                f"({type(exc).__name__}: {exc}); start a new advise run") from None
        found = now.get(kind)
        if found is None:
            plans.append(dataclasses.replace(before, gone=True))
        else:
            node = before.node if before.node in found.nodes else found.node
            plans.append(dataclasses.replace(before, nodes=found.nodes, node=node,
                                             host=str(envs.get(node, {}).get("hostname")
                                                      or node)))
    return plans


def prices_by_kind(given: Sequence[tuple[str, float]], kinds: Collection[str]
                   ) -> dict[str, float]:
    """--price KIND=USD as {kind: USD per hour}; a bare --price USD where the cluster has one
    kind. BadInputError naming a kind no node has (with the cluster's kinds), or a bare price
    where there are several."""
    prices: dict[str, float] = {}
    for name, usd in given:
        if name in prices:
            raise BadInputError(f"--price {name}={usd:g}: {name} was priced twice "
                                f"(${prices[name]:g}/h first); give each kind one price")
        if not name and len(kinds) == 1:
            name = next(iter(kinds))
        elif not name:
            raise BadInputError(f"--price {usd:g}: the cluster has {len(kinds)} kinds of node "
                                f"({', '.join(sorted(kinds))}); give each one's as --price "
                                "KIND=USD_PER_HOUR")
        if name not in kinds:
            raise BadInputError(f"--price {name}={usd:g}: no node of the cluster is of kind "
                                f"{name!r} (its kinds: {', '.join(sorted(kinds))}); name one "
                                "of those, or start its nodes with ray start --resources "
                                f"'{{\"deploybench\": 1, \"deploybench-kind-{name}\": 1}}'")
        prices[name] = usd
    return prices


def kind_request(request: Request, plan: KindPlan, share: int = 1) -> Request:
    """What a kind's study is asked: the request on its node's cores (thread counts above
    them brought down to them), its price, and `share` of the budget's wall time (the kinds
    advised one after another on one host split it)."""
    threads = tuple(sorted({min(t, plan.cores) for t in request.threads}))
    return dataclasses.replace(request, cores=plan.cores, threads=threads,
                               price=dict(request.prices).get(plan.kind), prices=(),
                               budget_s=request.budget_s / max(1, share))


@dataclass
class Study:
    """One kind's study: its Advice, or why there is none (`why`; `interrupted`)."""

    plan: KindPlan
    price: float | None = None
    advice: Advice | None = None
    why: str | None = None
    interrupted: bool = False

    @property
    def pick(self) -> Held | None:
        return self.advice.pick if self.advice is not None else None

    @property
    def folder(self) -> str:
        return f"{KINDS_FOLDER}/{folder_name(self.plan.kind)}"


@dataclass(frozen=True)
class Ranked:
    """A kind's place in the answer: its pick's cost per million (with the interval its peak's
    interval gives), the machines it needs, its peak per core, the kinds it ties with."""

    study: Study
    cost: float | None
    cost_low: float | None  # None where the pick held in one round: no interval
    cost_high: float | None
    machines: tuple[int, int, int] | None  # at the peak; at its interval's high and low ends
    per_core: float | None
    ties: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.study.plan.kind


def _ranked(study: Study, need_qps: float | None) -> Ranked:
    """A kind's costs; where its pick held in one round there is no interval (its bounds
    None), and no machine count but the one at its peak."""
    from toolkit.advise import usd_per_million

    held = study.pick
    if held is None or not held.peak_qps:
        return Ranked(study, None, None, None, None, None)
    peak = held.peak_qps
    low = held.low_qps if held.low_qps and held.low_qps > 0 else None
    high = held.high_qps if held.high_qps and low else None
    machines = None
    if need_qps:
        at_peak = math.ceil(need_qps / peak)
        machines = (at_peak, math.ceil(need_qps / high) if high else at_peak,
                    math.ceil(need_qps / low) if low else at_peak)
    return Ranked(study, usd_per_million(study.price, peak, need_qps),
                  usd_per_million(study.price, high, need_qps),
                  usd_per_million(study.price, low, need_qps),
                  machines, peak / max(1, study.plan.cores))


def rank(studies: Sequence[Study], need_qps: float | None) -> list[Ranked]:
    """The kinds, cheapest first: those priced by cost per million (each with the kinds whose
    cost interval overlaps its own: its ties), then those with no price by peak per core,
    then those with no pick."""
    ranked = [_ranked(s, need_qps) for s in studies]
    priced = sorted((r for r in ranked if r.cost is not None),
                    key=lambda r: (r.cost, r.cost_high, r.kind))
    unpriced = sorted((r for r in ranked if r.cost is None and r.per_core is not None),
                      key=lambda r: (-(r.per_core or 0.0), r.kind))
    none = sorted((r for r in ranked if r.per_core is None), key=lambda r: r.kind)
    tied = [dataclasses.replace(r, ties=tuple(
        o.kind for o in priced if o is not r and _overlap(r, o))) for r in priced]
    return [*tied, *unpriced, *none]


def _overlap(a: Ranked, b: Ranked) -> bool:
    """Whether two kinds' cost intervals overlap (one without an interval overlaps all)."""
    if None in (a.cost_low, a.cost_high, b.cost_low, b.cost_high):
        return True
    assert a.cost_low is not None and a.cost_high is not None
    assert b.cost_low is not None and b.cost_high is not None
    return a.cost_low <= b.cost_high and b.cost_low <= a.cost_high


def separation(first: Ranked, other: Ranked) -> str:
    """What would tell two tied kinds apart: the price below which `first` is cheaper for
    certain (its interval's top under the other's bottom), or the other's price above which."""
    once = [r.kind for r in (first, other) if r.cost_low is None or r.cost_high is None]
    if once:
        return (f"{' and '.join(once)}'s pick held in one round only, so its cost has no "
                "interval; confirming rounds that hold would separate them")
    assert first.study.price and other.study.price
    assert first.cost_high and other.cost_low
    below = other.cost_low / first.cost_high * first.study.price
    above = first.cost_high / other.cost_low * other.study.price
    return (f"{first.kind} would be cheaper for certain at a price under ${below:.4g}/h, or "
            f"if {other.kind} cost over ${above:.4g}/h; narrower peak intervals (more "
            "confirming rounds, a quieter machine) could also separate them")


@dataclass
class Fleet:
    """What `advise` across a cluster's kinds found (the run's advice.json)."""

    request: Request
    folder: Path
    address: str
    studies: list[Study]
    budget_used_s: float = 0.0

    @property
    def ranking(self) -> list[Ranked]:
        return rank(self.studies, self.request.need_qps)

    @property
    def best(self) -> Ranked | None:
        ranked = self.ranking
        return ranked[0] if ranked and ranked[0].per_core is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request.to_dict(), "cluster": self.address,
            "budget_used_s": round(self.budget_used_s, 1),
            "ranking": [{
                "kind": r.kind, "price_usd_per_hour": r.study.price,
                "usd_per_million": _round(r.cost), "usd_per_million_low": _round(r.cost_low),
                "usd_per_million_high": _round(r.cost_high),
                "machines": r.machines[0] if r.machines else None,
                "machines_range": [r.machines[1], r.machines[2]] if r.machines else None,
                "peak_per_core_qps": _round(r.per_core), "ties": list(r.ties),
                "pick": r.study.pick.to_dict() if r.study.pick else None,
                "why": r.study.why} for r in self.ranking],
            "kinds": {s.plan.kind: {**s.plan.to_dict(), "folder": s.folder, "price": s.price,
                                    "why": s.why, "interrupted": s.interrupted,
                                    "study": s.advice.to_dict() if s.advice else None}
                      for s in self.studies},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


def gone_why(plan: KindPlan) -> str:
    return (f"no node of kind {plan.kind} is in the cluster now (it was advised on "
            f"{plan.node}): start one and --resume to finish its study")


def advise_side_by_side(plans: Sequence[KindPlan], work: Callable[[KindPlan], Study],
                        stop: threading.Event,
                        join: Callable[[threading.Thread], None] = lambda t: t.join(0.2)
                        ) -> tuple[list[Study], bool]:
    """`work(plan)` for every kind: the kinds of each host one after another, the hosts side by
    side (a thread each). Ctrl-C (or SIGTERM) here sets `stop`, which each kind's backend
    heeds as Ctrl-C; every kind's study comes back, and whether it was interrupted."""
    by_host: dict[str, list[KindPlan]] = {}
    for plan in plans:
        by_host.setdefault(plan.host, []).append(plan)
    studies: dict[str, Study] = {}

    def run(group: list[KindPlan]) -> None:
        for plan in group:
            if stop.is_set():
                studies[plan.kind] = Study(plan, why="interrupted before it started",
                                           interrupted=True)
                continue
            try:
                studies[plan.kind] = work(plan)
            except KeyboardInterrupt:
                studies[plan.kind] = Study(plan, why="interrupted", interrupted=True)
            except Exception as exc:  # the next kind on this host still runs
                log.debug("kind %s failed", plan.kind, exc_info=True)
                studies[plan.kind] = Study(plan, why=f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(group,), name=f"kind {group[0].kind}",
                                daemon=True) for group in by_host.values()]
    for thread in threads:
        thread.start()
    interrupted = False
    while True:
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    join(thread)  # where Ctrl-C lands
            break
        except KeyboardInterrupt:
            interrupted = True
            stop.set()  # the threads end their stages as Ctrl-C would, and come back
    return [studies.get(p.kind) or Study(p, why="its thread ended without a study")
            for p in plans], interrupted or any(s.interrupted for s in studies.values())


def study_of(plan: KindPlan, request: Request, folder: Path,
             runner: Any, advise: Callable[..., Advice | None]) -> Study:
    """One kind's study (`advise(request, folder, runner)`), its failure kept as its `why`
    (one kind's failure never loses the others'). A kind whose nodes are gone (`plan.gone`)
    still gives the study it finished before: its runner refuses only what needs a node."""
    price = request.price
    try:
        advice = advise(request, folder, runner)
    except DeploybenchError as exc:
        return Study(plan, price, why=str(exc))
    except KeyboardInterrupt:
        return Study(plan, price, why="interrupted", interrupted=True)
    except Exception as exc:  # one kind's bug or lost node: the others still ranked
        log.debug("kind %s failed", plan.kind, exc_info=True)
        return Study(plan, price, why=f"{type(exc).__name__}: {exc}")
    if advice is None:
        return Study(plan, price, why="interrupted", interrupted=True)
    return Study(plan, price, advice)


def plan_run(request: Request, folder: Path, address: str, cluster: Any,
             stored: Mapping[str, Any] | None, say: Callable[[str], None]
             ) -> tuple[Request, list[KindPlan], Path]:
    """The kinds to advise on `cluster` (an opened `ClusterBackend`): those a resumed run
    stored (`stored`), each on a node of its kind now, else the cluster's, with the request's
    prices checked against them and both kept in `folder` (BadInputError before any study
    starts: a price for a kind no node has). Also the folder, made (resolved)."""
    from toolkit.advise import save_request
    from toolkit.results import prepare_out_dir

    if stored is not None:
        plans = replan_kinds(stored, cluster.nodes, cluster.environments)
        new = sorted({p.kind for p in plan_kinds(cluster.nodes, cluster.environments)}
                     - {p.kind for p in plans})
        if new:
            say(f"kinds that joined since the run started are not advised: {', '.join(new)}")
    else:
        plans = plan_kinds(cluster.nodes, cluster.environments)
        prices = prices_by_kind(request.prices, [p.kind for p in plans])
        request = dataclasses.replace(request, prices=tuple(sorted(prices.items())))
        folder = prepare_out_dir(folder)
        save_request(folder, request, {"address": address, "placement": "spread",
                                       "kinds": {p.kind: p.to_dict() for p in plans}})
    shares = _shares(plans)
    for plan in plans:
        say(f"kind {plan.kind}: {len(plan.nodes)} node{'s' * (len(plan.nodes) > 1)} "
            f"({', '.join(plan.nodes)}), advised on {plan.node} ({plan.cores} "
            f"core{'s' * (plan.cores > 1)} usable)"
            + (" - no node of it is in the cluster now" if plan.gone else "")
            + ("" if shares[plan.host] == 1 else
               f", one after another with the other kinds on host {plan.host}"))
    return request, plans, folder


def _shares(plans: Sequence[KindPlan]) -> dict[str, int]:
    return {p.host: sum(1 for q in plans if q.host == p.host) for p in plans}


StageRunnerFor = Callable[[Any, Mapping[str, Any], str], Any]  # (backend, where, kind)


def advise_kinds(request: Request, folder: Path, address: str, cluster: Any,
                 plans: Sequence[KindPlan], runner_for: StageRunnerFor, *,
                 trust_pickle: bool = False, say: Callable[[str], None] = lambda line: None
                 ) -> tuple[list[Study], bool]:
    """Every kind's study in `folder/kinds/<kind>/`, each on a backend of `cluster` kept to
    its node (`runner_for(backend, where, kind)`: how its stages run), side by side across
    hosts; each kind's own answer written in its folder. The studies, and whether Ctrl-C (or
    SIGTERM) cut them short."""
    from toolkit.advise import StageRunner, advise, save_request, write_advice
    from toolkit.calibrate import quiet_serial_costs
    from toolkit.report import advise as advice_report
    from toolkit.runners.onnxruntime import CAPTURING

    stop = threading.Event()
    shares = _shares(plans)

    def work(plan: KindPlan) -> Study:
        into = folder / KINDS_FOLDER / folder_name(plan.kind)
        asked = kind_request(request, plan, shares[plan.host])
        if plan.gone and not (into / "advice.json").is_file():
            return Study(plan, asked.price, why=gone_why(plan))  # nothing finished to read
        kept = {"address": address, "placement": "spread", "node": plan.node, "kind": plan.kind}
        into.mkdir(parents=True, exist_ok=True)
        save_request(into, asked, kept)

        def tell(line: str) -> None:
            with CAPTURING:  # not into another thread's capture of fd 2
                say(f"[{plan.kind}] {line}")

        if plan.gone:  # its finished study is read back; anything that needs a node refused
            def refuse(*_: Any) -> Any:
                raise BadInputError(gone_why(plan))

            runner = StageRunner(refuse, refuse, refuse)
        else:
            backend = cluster.kept_to(plan.node)
            backend.stop = stop
            runner = dataclasses.replace(
                runner_for(backend, kept, plan.kind), serial_costs=(
                    lambda cores, pools: backend.call(quiet_serial_costs, cores, pools)))
        found = study_of(plan, asked, into, runner,
                         lambda r, f, s: advise(r, f, s, trust_pickle=trust_pickle, say=tell))
        if found.advice is not None:
            write_advice(found.advice)
            advice_report.write(found.advice)
        return found

    return advise_side_by_side(plans, work, stop)
