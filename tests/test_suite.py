import pytest

from toolkit.errors import BadInputError
from toolkit.suite import cases, load_suite, parse_suite


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
