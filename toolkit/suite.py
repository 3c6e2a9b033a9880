"""Suite files (TOML) and the case plan they expand to.

A suite names workloads, batch sizes, providers, the timing budget and parity tolerances:

    name = "quick"
    workloads = ["sklearn/seed-linreg", "keras/digits-mlp"]   # framework/name, or a bare name
    batch_sizes = [1, 64]
    providers = ["cpu", "cuda"]                              # ONNX Runtime execution providers
    rounds = 4                                               # fresh processes per case
    threads = 2                                   # threads every runtime gets in the timings
    [timing]   warmup, min_iterations, min_seconds, max_seconds
    [parity]   rtol, atol
    [export]   opset
    [scenarios.server]  p99_ms, target_qps, queries, compliant, workers, threads, batch_sizes,
                        max_delay_ms, spinning: MLPerf LoadGen scenarios (also offline,
                        singlestream, multistream, with duration_s for queries) run on every
                        option after the timings

`threads` means one thing everywhere: the threads a runtime gets. At the top it is each timed
runtime's; in a [scenarios.NAME] table it is each worker's, and the scenario's pool is `workers`
x `threads` (by default a worker per physical core of one thread each: the top-level `threads`
does not size a pool).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.session import OPTIMIZATION_LEVELS, check_session
from toolkit import workloads
from toolkit.errors import BadInputError
from toolkit.recipes import (
    DEFAULT_RULE,
    FP32,
    NATIVE_RECIPES,
    ONNX_RECIPES,
    QualityRule,
    parse_recipes,
)
from toolkit.runners import NATIVE, RUNNERS
from toolkit.runners.onnxruntime import PROVIDERS
from toolkit.scenarios import SCENARIOS, STREAMS, ScenarioSettings
from toolkit.timing import Budget

SUITES_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "suites"
MAX_OPSET = 23  # the newest default-domain opset that onnx 1.23 knows
BUILTIN = ("quick", "full")


@dataclass(frozen=True)
class Suite:
    name: str
    workloads: tuple[str, ...]
    batch_sizes: tuple[int, ...] = (1, 64)
    providers: tuple[str, ...] = ("cpu",)
    budget: Budget = Budget()
    rtol: float = 1e-4
    atol: float = 1e-5
    opset: int = 18
    threads: int = 1
    optimization: str = "all"
    # ONNX Runtime's other session options (exporters.session.SESSION_CHOICES) as sorted
    # (name, value) pairs, from a [session] table; those not given are at their defaults
    session: tuple[tuple[str, Any], ...] = ()
    timeout_s: float = 600.0
    rounds: int = 1  # fresh processes per case (results of schema 1 had one)
    recipes: tuple[str, ...] = (FP32,)
    max_quality_drop: str = "1%"  # the accuracy criterion of the recipes that change arithmetic
    shard: str = ""  # "i/n" when this is one host's share of a suite split across hosts
    scenarios: tuple[ScenarioSettings, ...] = ()  # MLPerf LoadGen scenarios, after the timings
    # What a serving decision needs beyond q/s: each machine's price in USD per hour (name ""
    # is the machine that ran; a cluster's node labels name the others), and the rate the
    # service must sustain (how many such machines it takes)
    prices: tuple[tuple[str, float], ...] = ()
    need_qps: float | None = None

    def __post_init__(self) -> None:
        if not self.workloads:
            raise BadInputError(f"suite {self.name!r} selects no workload")
        sizes = ",".join(map(str, self.batch_sizes))
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise BadInputError(f"--batch-sizes {sizes}: give whole numbers >= 1, e.g. 1,64")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise BadInputError(f"--batch-sizes {sizes}: each size once, e.g. 1,64")
        if not 7 <= self.opset <= MAX_OPSET:
            raise BadInputError(f"--opset {self.opset}: give an ONNX opset from 7 to "
                                f"{MAX_OPSET}, e.g. 18")
        for provider in self.providers:
            if provider not in PROVIDERS:
                raise BadInputError(
                    f"unknown provider {provider!r}; valid: {', '.join(PROVIDERS)}"
                )
        if not self.providers:
            raise BadInputError("no provider selected; use --providers cpu")
        if self.threads < 1:
            raise BadInputError(f"--threads must be >= 1, got {self.threads}")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise BadInputError(
                f"unknown graph optimisation level {self.optimization!r}; valid: "
                f"{', '.join(OPTIMIZATION_LEVELS)}"
            )
        check_session(dict(self.session), "[session]")
        if self.timeout_s <= 0:
            raise BadInputError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        if self.rounds < 1:
            raise BadInputError(f"--rounds must be >= 1, got {self.rounds}")
        for scenario in self.scenarios:
            scenario.check_timeout(self.timeout_s)
        object.__setattr__(self, "prices", tuple((str(n), float(v)) for n, v in self.prices))
        for name, price in self.prices:
            if not math.isfinite(price) or price <= 0:
                raise BadInputError(f"--price {name + '=' if name else ''}{price:g}: give the "
                                    "machine's price in USD per hour, a number > 0, e.g. 3.5")
        if self.need_qps is not None and not (math.isfinite(self.need_qps)
                                              and self.need_qps > 0):
            raise BadInputError(f"--need-qps {self.need_qps:g}: give the rate the service must "
                                "sustain, a number > 0, e.g. 50000")
        object.__setattr__(self, "recipes", parse_recipes(self.recipes))
        QualityRule.parse(self.max_quality_drop)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Suite:
        """The inverse of dataclasses.asdict (as stored in results.json's run section)."""
        values = dict(raw)
        values["budget"] = Budget(**values.get("budget", {}))
        values["scenarios"] = tuple(ScenarioSettings.from_dict(stored_scenario(
            s, values.get("threads", 1), values.get("providers", ("cpu",))))
            for s in values.get("scenarios", ()))
        for key in ("workloads", "batch_sizes", "providers", "recipes"):
            if key in values:
                values[key] = tuple(values[key])
        values["prices"] = tuple(tuple(pair) for pair in values.get("prices", ()))
        values["session"] = tuple(tuple(pair) for pair in values.get("session", ()))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """What results.json's run section keeps (`from_dict` makes the suite again)."""
        return {**dataclasses.asdict(self),
                "scenarios": [s.to_dict() for s in self.scenarios]}

    def replace(self, **changes: Any) -> Suite:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_threads() -> int:
    """The cores a run uses by default: the physical ones this process may run on."""
    from toolkit.environment import usable_cores

    return usable_cores()


def stored_scenario(stored: Mapping[str, Any], cores: int,
                    providers: Sequence[str] = ("cpu",)) -> dict[str, Any]:
    """A scenario as results.json keeps it, in today's terms. One with no `rounds` was searched
    once. One with no `threads` was stored
    when its pools' workers shared the suite's `threads` (`cores`): it gets the same pools, each
    worker's threads given. A CUDA option then had one worker with them all, which only the
    default layout gives again: where `cores` are not this machine's, BadInputError."""
    values = dict(stored)
    values.setdefault("rounds", 1)  # stored before searches came in rounds: it had one
    if "threads" in values:
        return values
    scenario, workers = values.get("scenario", "server"), values.get("workers")
    if workers:
        values["threads"] = max(1, cores // workers)
    elif scenario in STREAMS:
        values["threads"] = cores
    elif all(p == "cpu" for p in providers):
        values.update(workers=cores, threads=1)
    elif cores != default_threads():
        raise BadInputError(
            f"its [scenarios.{scenario}] was planned when --threads {cores} meant the cores an "
            "option's workers share (a CUDA option had one worker with them all), and this "
            f"machine has {default_threads()}: start a new run, where --workers and --threads "
            "(the threads each worker gets) give the pool")
    return values


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name (`quick`, `full`) or a TOML file by path."""
    path = SUITES_DIR / f"{name_or_path}.toml" if name_or_path in BUILTIN else Path(name_or_path)
    if not path.is_file():
        raise BadInputError(
            f"suite {name_or_path!r} not found: give one of {', '.join(BUILTIN)} "
            "or the path of a .toml file"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid TOML ({exc})") from None
    return parse_suite(raw, source=str(path))


# Each key of a suite file: (what it must be, an example the error message shows).
_LIST_OF_TEXT = "a list of names"
KEYS: dict[str, tuple[str, str]] = {
    "name": ("text", 'name = "nightly"'),
    "workloads": (_LIST_OF_TEXT, 'workloads = ["torch/digits-mlp"]'),
    "frameworks": (_LIST_OF_TEXT, 'frameworks = ["torch"]'),
    "batch_sizes": ("a list of whole numbers", "batch_sizes = [1, 64]"),
    "providers": (_LIST_OF_TEXT, 'providers = ["cpu", "cuda"]'),
    "threads": ("a whole number", "threads = 2"),
    "rounds": ("a whole number", "rounds = 4"),
    "recipes": (_LIST_OF_TEXT, 'recipes = ["fp32", "int8-dynamic"]'),
    "max_quality_drop": ("text", 'max_quality_drop = "1%"'),
    "optimization": ("text", 'optimization = "all"'),
    "session": ("a table", "[session] memory_arena = false"),
    "timeout_s": ("a number", "timeout_s = 600"),
    "timing": ("a table", "[timing] min_seconds = 0.2"),
    "parity": ("a table", "[parity] rtol = 1e-4"),
    "export": ("a table", "[export] opset = 18"),
    "scenarios": ("a table", "[scenarios.server] p99_ms = 10"),
    "prices": ("a table", "[prices] default = 3.5"),
    "need_qps": ("a number", "need_qps = 50000"),
}
TABLES: dict[str, dict[str, str]] = {  # the keys of each table, and what each must be
    "timing": {"warmup": "a whole number", "min_iterations": "a whole number",
               "min_seconds": "a number", "max_seconds": "a number",
               "warmup_seconds": "a number", "blocks": "a whole number"},
    "parity": {"rtol": "a number", "atol": "a number"},
    "export": {"opset": "a whole number"},
}
SCENARIO_KEYS: dict[str, str] = {
    "p99_ms": "a number", "target_qps": "a number", "duration_s": "a number",
    "queries": "a whole number", "compliant": "true or false", "workers": "a whole number",
    "threads": "a whole number", "batch_sizes": "a list of whole numbers",
    "max_delay_ms": "a number", "spinning": "true or false", "rounds": "a whole number"}


def _fits(value: Any, kind: str) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    return {
        "text": lambda: isinstance(value, str),
        _LIST_OF_TEXT: lambda: isinstance(value, list) and all(isinstance(v, str) for v in value),
        "a list of whole numbers": lambda: isinstance(value, list) and all(map(whole, value)),
        "a whole number": lambda: whole(value),
        "a number": lambda: number(value),
        "a table": lambda: isinstance(value, dict),
        "true or false": lambda: isinstance(value, bool),
    }[kind]()


def check_types(raw: dict[str, Any], source: str) -> None:
    """Every key known and of the right type, or one BadInputError naming the key, the value
    and an example of what fits."""
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise BadInputError(f"{source}: unknown key(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(sorted(KEYS))}")
    for key, value in raw.items():
        kind, example = KEYS[key]
        if not _fits(value, kind):
            raise BadInputError(f"{source}: {key} = {value!r} is not {kind}; e.g. {example}")
    for name, table in raw.get("scenarios", {}).items():
        if name not in SCENARIOS or not isinstance(table, dict):
            raise BadInputError(f"{source}: [scenarios.{name}] is not a scenario table; give "
                                f"one of {', '.join(SCENARIOS)}, e.g. [scenarios.server]")
        _check_table(source, f"scenarios.{name}", table, SCENARIO_KEYS)
    for name, value in raw.get("prices", {}).items():
        if not _fits(value, "a number"):
            raise BadInputError(f"{source}: [prices] {name} = {value!r} is not a number; e.g. "
                                "default = 3.5 (USD per hour of the machine that ran)")
    for table, fields in TABLES.items():
        _check_table(source, table, raw.get(table, {}), fields)


def _check_table(source: str, title: str, table: dict[str, Any], fields: dict[str, str]) -> None:
    for key, value in table.items():
        if key not in fields:
            raise BadInputError(f"{source}: unknown key {key!r} in [{title}]; valid: "
                                f"{', '.join(fields)}")
        if not _fits(value, fields[key]):
            raise BadInputError(f"{source}: [{title}] {key} = {value!r} is not {fields[key]}")


DEFAULT_ROUNDS = 4


def parse_suite(raw: dict[str, Any], source: str = "<suite>") -> Suite:
    check_types(raw, source)
    for key in ("workloads", "frameworks", "batch_sizes", "providers", "recipes"):
        if raw.get(key) == []:
            raise BadInputError(f"{source}: {key} = [] selects nothing; {KEYS[key][1]}, or "
                                "leave the key out for the default")
    try:
        chosen = workloads.select(raw.get("workloads"), raw.get("frameworks"))
        parity = raw.get("parity", {})
        return Suite(
            name=raw.get("name", Path(source).stem),
            workloads=tuple(w.key for w in chosen),
            batch_sizes=tuple(raw.get("batch_sizes", (1, 64))),
            providers=tuple(raw.get("providers", ("cpu",))),
            budget=Budget(**raw.get("timing", {})),
            rtol=float(parity.get("rtol", 1e-4)),
            atol=float(parity.get("atol", 1e-5)),
            opset=raw.get("export", {}).get("opset", 18),
            threads=raw.get("threads", default_threads()),
            optimization=raw.get("optimization", "all"),
            session=tuple(sorted(raw.get("session", {}).items())),
            timeout_s=float(raw.get("timeout_s", 600.0)),
            rounds=raw.get("rounds", DEFAULT_ROUNDS),
            recipes=tuple(raw.get("recipes", (FP32,))),
            max_quality_drop=raw.get("max_quality_drop", DEFAULT_RULE),
            scenarios=tuple(_scenario(name, table)
                            for name, table in raw.get("scenarios", {}).items()),
            prices=tuple(("" if name == "default" else name, value)
                         for name, value in raw.get("prices", {}).items()),
            need_qps=raw.get("need_qps"),
        )
    except BadInputError as exc:
        raise BadInputError(f"{source}: {exc}") from None


def _scenario(name: str, table: dict[str, Any]) -> ScenarioSettings:
    """A [scenarios.NAME] table; its errors name the table (and the flag that is its twin)."""
    try:
        return ScenarioSettings(scenario=name, **{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in table.items()})
    except BadInputError as exc:
        raise BadInputError(f"[scenarios.{name}]: {exc}") from None


def build_suite(
    name_or_path: str,
    *,
    workloads: list[str] | None = None,
    frameworks: list[str] | None = None,
    providers: list[str] | None = None,
    batch_sizes: tuple[int, ...] | None = None,
    threads: int | None = None,
    optimization: str | None = None,
    timeout_s: float | None = None,
    shard: str | None = None,
    rounds: int | None = None,
    recipes: list[str] | None = None,
    max_quality_drop: str | None = None,
) -> Suite:
    """A suite file with the command line's choices applied on top."""
    from toolkit import workloads as registry

    suite = load_suite(name_or_path)
    if workloads or frameworks:
        chosen = registry.select(workloads or list(suite.workloads), frameworks)
        if not chosen:
            raise BadInputError(
                f"--frameworks {','.join(frameworks or [])} leaves no workload of "
                f"{', '.join(workloads or suite.workloads)}; `deploybench list` shows them"
            )
        suite = suite.replace(workloads=tuple(w.key for w in chosen))
    suite = suite.replace(
        providers=tuple(providers) if providers else None, batch_sizes=batch_sizes,
        threads=threads, optimization=optimization, timeout_s=timeout_s, rounds=rounds,
        recipes=tuple(recipes) if recipes else None, max_quality_drop=max_quality_drop,
    )
    return take_shard(suite, shard) if shard else suite


def take_shard(suite: Suite, spec: str) -> Suite:
    """The i-th of n shares of the suite's workloads (`--shard i/n`, 1-based), so n hosts can
    split a suite; each workload's build and cases stay on one host."""
    index, _, count = spec.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise BadInputError(f"--shard {spec!r}: give i/n with 1 <= i <= n, e.g. --shard 2/3")
    share = suite.workloads[i - 1 :: n]
    if not share:
        raise BadInputError(
            f"--shard {spec}: the suite has {len(suite.workloads)} workload(s), so share {i} "
            f"of {n} is empty; use at most {len(suite.workloads)} shards"
        )
    return suite.replace(workloads=share, shard=f"{i}/{n}")


@dataclass(frozen=True)
class Case:
    """One measurement child: an artifact in one runtime on one provider, with a recipe."""

    workload: str  # framework/name
    runner: str
    provider: str
    recipe: str = FP32

    @property
    def runtime(self) -> str:
        """`onnxruntime`, or `native` for a framework's own runner."""
        return "onnxruntime" if self.runner == "onnxruntime" else "native"

    @property
    def label(self) -> str:
        label = f"{self.workload} {self.runner} {self.provider}"
        return label if self.recipe == FP32 else f"{label} {self.recipe}"


def cases(suite: Suite, workload_key: str) -> list[Case]:
    """The native runner on the CPU (the baseline, always) and on each other provider of the
    suite it can use; then ONNX Runtime on each provider of the suite; then the same for each
    recipe of the suite that applies (ONNX recipes on ONNX Runtime, a native recipe on its own
    framework's runner)."""
    framework = workload_key.split("/", 1)[0]
    native = NATIVE.get(framework)
    planned: list[Case] = []
    for recipe in suite.recipes:
        if native and (recipe == FP32 or NATIVE_RECIPES.get(recipe) == framework):
            usable = RUNNERS[native].providers
            planned += [Case(workload_key, native, p, recipe)
                        for p in dict.fromkeys(("cpu", *suite.providers)) if p in usable]
        if recipe == FP32 or recipe in ONNX_RECIPES:
            planned += [Case(workload_key, "onnxruntime", p, recipe) for p in suite.providers]
    return list(dict.fromkeys(planned))
