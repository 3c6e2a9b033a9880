import pytest

from toolkit.errors import BadInputError
from toolkit.suite import Suite, cases, default_threads, load_suite, parse_suite


def test_builtin_suites_load():
    quick = load_suite("quick")
    assert quick.batch_sizes == (1, 64)
    assert {"sklearn", "keras", "torch"} == {k.split("/")[0] for k in quick.workloads}
    assert "cuda" in quick.providers
    full = load_suite("full")
    assert full.batch_sizes == (1, 8, 64, 512)
    assert "torch/digits-resnet18" in full.workloads


def test_bare_names_select_every_framework():
    suite = parse_suite({"workloads": ["digits-mlp"]})
    assert suite.workloads == ("keras/digits-mlp", "torch/digits-mlp")


def test_cases_are_native_where_it_can_run_then_each_provider():
    suite = parse_suite({"workloads": ["digits-mlp", "digits-logreg"],
                         "providers": ["cuda", "tensorrt"]})
    assert [(c.runner, c.provider) for c in cases(suite, "torch/digits-mlp")] == [
        ("native_torch", "cpu"), ("native_torch", "cuda"),
        ("onnxruntime", "cuda"), ("onnxruntime", "tensorrt")]
    # scikit-learn has no GPU path: its native baseline runs on the CPU only
    assert [(c.runner, c.provider) for c in cases(suite, "sklearn/digits-logreg")] == [
        ("native_sklearn", "cpu"), ("onnxruntime", "cuda"), ("onnxruntime", "tensorrt")]


@pytest.mark.parametrize("raw, message", [
    ({"workloads": ["nope"]}, "unknown workload 'nope'"),
    ({"workloads": ["digits-mlp"], "providers": ["tpu"]}, "unknown provider 'tpu'"),
    ({"workloads": ["digits-mlp"], "batch_sizes": [0]}, "--batch-sizes 0: give whole numbers"),
    ({"workloads": ["digits-mlp"], "batch_sizes": [1, 1]}, "each size once"),
    ({"workloads": []}, "workloads = [] selects nothing"),
    ({"workloads": ["digits-mlp"], "export": {"opset": 3}}, "--opset 3: give an ONNX opset"),
    ({"workloads": ["digits-mlp"], "rounds": 0}, "--rounds must be >= 1"),
    ({"workloads": ["digits-mlp"], "colour": "red"}, "unknown key(s) colour"),
    ({"workloads": ["digits-mlp"], "frameworks": ["jax"]}, "unknown framework 'jax'"),
    ({"workloads": ["digits-mlp"], "timing": {"min_iterations": 0}}, "min_iterations"),
    ({"workloads": ["digits-mlp"], "session": {"execution_mode": "parallel"}},
     "[session]: unknown ONNX Runtime session option 'execution_mode'"),
    ({"workloads": ["digits-mlp"], "session": {"memory_arena": "no"}},
     "memory_arena = 'no'; give one of true, false"),
    ({"workloads": ["digits-mlp"], "scenarios": {"server": {"spinning": "yes"}}},
     "[scenarios.server] spinning = 'yes' is not true or false"),
    ({"workloads": ["digits-mlp"], "session": "fast"}, "session = 'fast' is not a table"),
    ({"workloads": ["digits-mlp"], "scenarios": {"server": {"threads": 0}}},
     "[scenarios.server]: --threads 0: give the threads each worker gets"),
    ({"workloads": ["digits-mlp"], "scenarios": {"server": {"threads": "all"}}},
     "[scenarios.server] threads = 'all' is not a whole number"),
])
def test_bad_suites_name_the_value(raw, message):
    with pytest.raises(BadInputError) as info:
        parse_suite(raw, "s.toml")
    assert message in str(info.value) and str(info.value).startswith("s.toml")


def test_shards_split_the_workloads_without_overlap():
    from toolkit.suite import take_shard

    full = load_suite("full")
    shares = [take_shard(full, f"{i}/3") for i in (1, 2, 3)]
    keys = [k for share in shares for k in share.workloads]
    assert sorted(keys) == sorted(full.workloads) and len(keys) == len(set(keys))
    assert shares[1].shard == "2/3"
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(BadInputError, match="--shard"):
            take_shard(full, bad)
    with pytest.raises(BadInputError, match="share 12 of 12 is empty"):
        take_shard(full, "12/12")


def test_missing_and_invalid_suite_files(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_suite(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("workloads = [")
    with pytest.raises(BadInputError, match="not valid TOML"):
        load_suite(str(bad))


def test_threads_are_a_runtimes_at_the_top_and_each_workers_in_a_scenario():
    """One meaning: the top-level `threads` is each timed runtime's and does not size a pool;
    a [scenarios.NAME] table's is each worker's, beside its `workers`."""
    suite = parse_suite({"workloads": ["digits-mlp"], "threads": 1, "scenarios": {
        "server": {"workers": 2, "threads": 1}, "offline": {}, "singlestream": {"threads": 2}}})
    server, offline, stream = suite.scenarios
    assert suite.threads == 1
    assert server.layout("cpu", 8) == (2, 1)
    assert offline.layout("cpu", 8) == (8, 1)  # a worker per core, whatever the top says
    assert stream.layout("cpu", 8) == (1, 2)
    assert Suite.from_dict(suite.to_dict()) == suite


def stored(threads: int, providers: tuple[str, ...] = ("cpu",), **scenario) -> dict:
    """A suite's run section as results.json kept it before `threads` was each worker's: no
    `threads` in its scenarios, whose workers shared the suite's `threads` cores."""
    suite = parse_suite({"workloads": ["digits-mlp"], "threads": threads,
                         "providers": list(providers),
                         "scenarios": {scenario.pop("scenario", "server"): scenario}})
    raw = suite.to_dict()
    for entry in raw["scenarios"]:
        del entry["threads"]
    return raw


@pytest.mark.parametrize(("raw", "provider", "pool"), [
    (stored(4, workers=2), "cpu", (2, 2)),  # --workers 2 --threads 4 was 2 workers x 2
    (stored(4, scenario="singlestream"), "cpu", (1, 4)),  # a stream: one worker, every core
    (stored(3), "cpu", (3, 1)),  # --threads 3 was a worker per core of the 3, one thread each
    (stored(default_threads(), ("cpu", "cuda")), "cuda", (1, default_threads())),
    (stored(default_threads(), ("cpu", "cuda")), "cpu", (default_threads(), 1)),
])
def test_a_suite_stored_before_threads_were_per_worker_resumes_with_the_same_pools(raw, provider,
                                                                                   pool):
    (scenario,) = Suite.from_dict(raw).scenarios
    assert scenario.layout(provider, default_threads()) == pool  # laid over this machine


def test_a_cuda_suite_stored_on_other_cores_than_the_default_is_refused_with_why():
    with pytest.raises(BadInputError, match="planned when --threads .* meant the cores"):
        Suite.from_dict(stored(default_threads() + 1, ("cpu", "cuda")))
