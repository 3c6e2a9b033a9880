"""Shared fixtures: tiny suites and one real end-to-end run reused by the CLI tests."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Runs made by the tests keep their history (and peak cache) away from the user's own; the
# folder goes when the session ends.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="deploybench-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)

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


# `make test` runs the tests in two processes (pytest-xdist, --dist loadgroup): a test's time
# is mostly a child it waits for, so the second core idled. A module's tests stay together (its
# fixtures are built once), the modules that share the session's `tiny_run` go together, and the
# slowest modules are handed out first so that neither process is left with a long tail.
SLOWEST_FIRST = ("test_loadgen", "test_cluster", "tiny_run", "test_bench", "test_recipes",
                 "test_resume", "test_exporters", "test_runners")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    sharing = {item.module.__name__ for item in items
               if "tiny_run" in getattr(item, "fixturenames", ())}

    def group(item: pytest.Item) -> str:
        module = item.module.__name__
        return "tiny_run" if module in sharing else module.rsplit(".", 1)[-1]

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    rank = {name: n for n, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(group(item), len(rank)))  # stable: order kept within


def cuda_usable() -> bool:
    from toolkit.environment import provider_status

    return provider_status(("cuda",))["cuda"] == "usable"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """`deploybench run` on one small workload per framework, through the real console script."""
    root = tmp_path_factory.mktemp("run")
    suite = write_suite(root / "tiny.toml",  # one round: rounds are run for real elsewhere
                        ["sklearn/seed-linreg", "keras/seed-dense", "torch/digits-mlp"],
                        rounds=1)
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "run", "--suite", str(suite), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    return proc, out
