"""Shared fixtures: tiny suites and one real end-to-end run reused by the CLI tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Runs made by the tests keep their history away from the user's own; the folder goes when
# the session ends.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="deploybench-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)
# And every cache (the FLOP peak, the cores' fastest readings, the serial costs): the tests
# measure under load, and what they saw must not be what the user's later runs read. The test
# processes of one session share the first one's (made once: a calibration is a minute).
if "DEPLOYBENCH_TEST_CACHE" not in os.environ:
    os.environ["DEPLOYBENCH_TEST_CACHE"] = tempfile.mkdtemp(prefix="deploybench-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DEPLOYBENCH_TEST_CACHE"], ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = os.environ["DEPLOYBENCH_TEST_CACHE"]
# A serving step's core-speed readings before and after each option: short in the tests (what
# they read is tested in test_busy with the default length)
os.environ.setdefault("DEPLOYBENCH_CORE_SPEED_S", "0.02")

TINY_TIMING = """
[timing]
warmup = 1
min_iterations = 3
min_seconds = 0.0
max_seconds = 0.2
"""


def write_suite(path: Path, workloads: list[str], providers: list[str] | None = None,
                batch_sizes: list[int] | None = None, rounds: int = 2) -> Path:
    providers = providers or ["cpu", "cuda"]
    batch_sizes = batch_sizes or [1, 4]
    path.write_text(
        f'name = "tiny"\nworkloads = {workloads!r}\nbatch_sizes = {batch_sizes!r}\n'
        f"providers = {providers!r}\nthreads = 1\nrounds = {rounds}\n" + TINY_TIMING,
        encoding="utf-8",
    )
    return path


# `make test` runs the tests in two processes (pytest-xdist, --dist loadfile): a test's time is
# mostly a child it waits for, so the second core idled. A module's tests stay in one process
# (its fixtures are built once), the slowest modules are handed out first so that neither
# process is left with a long tail, and the one run several modules share (`tiny_run`) is made
# once for both processes.
SLOWEST_FIRST = ("test_loadgen", "test_advise", "test_cluster", "test_bench", "test_cli",
                 "test_recipes", "test_report", "test_resume", "test_exporters", "test_runners")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))


def cuda_usable() -> bool:
    from toolkit.environment import provider_status

    return provider_status(("cuda",))["cuda"] == "usable"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """`deploybench run` on one small workload per framework, through the real console script.
    Under pytest -n the test processes share it: the first to ask makes it while the other
    waits on a lock in the session's shared temporary folder. Tests only read it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _tiny_run(tmp_path_factory.mktemp("run"))
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / "tiny_run"
    made = root / "proc.json"
    with FileLock(f"{root}.lock"):
        if not made.is_file():  # made once, even when it fails (the other process reads why)
            root.mkdir(exist_ok=True)
            try:
                proc, _ = _tiny_run(root)
            except Exception as exc:  # a timeout: every test that uses it fails with why
                proc = subprocess.CompletedProcess([], -1, "", f"tiny_run failed: {exc!r}")
            made.write_text(json.dumps({"args": proc.args, "returncode": proc.returncode,
                                        "stdout": proc.stdout, "stderr": proc.stderr}))
    kept = json.loads(made.read_text())
    return (subprocess.CompletedProcess(kept["args"], kept["returncode"], kept["stdout"],
                                        kept["stderr"]), root / "out")


def _tiny_run(root: Path) -> tuple[subprocess.CompletedProcess, Path]:
    suite = write_suite(root / "tiny.toml",  # one round: rounds are run for real elsewhere
                        ["sklearn/seed-linreg", "keras/seed-dense", "torch/digits-mlp"],
                        rounds=1)
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "run", "--suite", str(suite), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    return proc, out
