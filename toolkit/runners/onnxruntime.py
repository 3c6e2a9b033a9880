"""ONNX Runtime: one InferenceSession on one execution provider, proven by `get_providers()`.

`get_available_providers()` lists CUDA on machines with no GPU; only the providers a created
session reports count. A provider asked for and not running raises ProviderUnavailableError
carrying ONNX Runtime's own reason. ORT writes that reason to the process's stderr from C++ (so
it is captured at the file-descriptor level) and, for a failed TensorRT or CUDA provider, prints
an "EP Error ... Falling back" banner from Python to stdout (captured too, and folded into the
reason instead of reaching the user's terminal).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from exporters.session import open_session, session_options
from toolkit.errors import BadInputError, ProviderUnavailableError
from toolkit.runners.base import RunnerConfig

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


# Held while fd 2 or sys.stdout is captured: two threads capturing at once (advise runs a kind
# of node in each) would restore each other's sinks, and leave the process writing into one.
CAPTURING = threading.RLock()


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to fd 2 while the block runs; lines land in the list."""
    lines: list[str] = []
    with CAPTURING, tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            lines.extend(re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines())


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """What ORT says while the block runs: native stderr, and Python-level prints to stdout."""
    printed = io.StringIO()
    with CAPTURING, captured_stderr() as lines, contextlib.redirect_stdout(printed):
        yield lines
    lines.extend(printed.getvalue().splitlines())


def unavailable_reason(provider: str, log: list[str]) -> str:
    """The shortest true account of why ORT fell back, from its log lines."""
    for line in log:
        found = re.match(r"EP Error:? (?:\S+:\d+ [^(]*\([^)]*\) )?(.+?)(?: when using .*)?$", line)
        if found:
            return f"{PROVIDERS[provider]} not usable: {found.group(1).strip()}"
    for line in log:
        found = re.search(r"Failed to load library (\S+) with error: (.+)", line)
        if found:
            library = Path(found.group(1)).name
            return f"{PROVIDERS[provider]} not usable: {library}: {found.group(2)}"
    for line in log:
        if "Failed to create" in line or "Error" in line:
            return f"{PROVIDERS[provider]} not usable: {line.split('] ', 1)[-1].strip()}"
    return f"{PROVIDERS[provider]} was requested but the session runs on CPUExecutionProvider"


def create_session(source: Path | bytes, provider: str, options: Any) -> Any:
    """An InferenceSession that really runs on `provider`, or ProviderUnavailableError."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise BadInputError(f"unknown provider {provider!r}; valid: {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider]
    chain = {"cpu": [wanted], "cuda": [wanted, "CPUExecutionProvider"],
             "tensorrt": [wanted, PROVIDERS["cuda"], "CPUExecutionProvider"]}[provider]
    if provider != "cpu" and hasattr(ort, "preload_dlls"):
        with contextlib.suppress(Exception):  # absent CUDA libraries show up just below
            ort.preload_dlls()
    with captured_output() as log:
        session = open_session(source, options, chain)
    if session.get_providers()[0] != wanted:
        raise ProviderUnavailableError(unavailable_reason(provider, log))
    return session


def _spinning(options: Any) -> bool:
    """Whether the session's intra-op threads spin (ORT's default, unless turned off)."""
    try:
        return options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
    except Exception:  # no such entry: the default, spinning
        return True


class OrtRunner:
    """Variants: `run` (numpy in and out; on a GPU named `copies`, since it then includes the
    host-device copies a naive server pays) and `iobinding` (input bound on the device before
    the timed call, outputs left there, the call synchronised)."""

    runtime = "onnxruntime"
    idiomatic = "run"
    providers = tuple(PROVIDERS)

    def __init__(self, session: Any, config: RunnerConfig) -> None:
        self.session = session
        self.provider = config.provider
        self.device = config.device
        self.variants = ("run", "iobinding") if self.device == "cpu" else ("copies", "iobinding")
        inputs = session.get_inputs()
        self.input_names = [i.name for i in inputs]
        fixed = {i.shape[0] for i in inputs if i.shape and isinstance(i.shape[0], int)}
        self.fixed_batch = fixed.pop() if len(fixed) == 1 else None
        if any(not o.type.startswith("tensor") for o in session.get_outputs()):
            # Non-tensor outputs (a ZipMap's sequence of maps) cannot be bound to a device.
            self.variants = self.variants[:1]
        applied = session.get_session_options()
        self.settings = {
            "threads": applied.intra_op_num_threads,
            "intra_op_threads": applied.intra_op_num_threads,
            "inter_op_threads": applied.inter_op_num_threads,
            "graph_optimization": config.optimization,
            "spinning": _spinning(applied),
            "memory_arena": applied.enable_cpu_mem_arena,
            "memory_pattern": applied.enable_mem_pattern,
            "session_providers": session.get_providers(),
        }

    @classmethod
    def import_framework(cls) -> None:
        import onnxruntime  # noqa: F401

    @classmethod
    def load(cls, path: Path, config: RunnerConfig) -> OrtRunner:
        options = session_options(config.threads, config.optimization, config.spinning,
                                  session=config.session)
        return cls(create_session(path, config.provider, options), config)

    def feed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Arrays by the session's input names (a one-input model takes its array by any name)."""
        if len(batch) == 1 and len(self.input_names) == 1:
            return {self.input_names[0]: next(iter(batch.values()))}
        missing = [n for n in self.input_names if n not in batch]
        if missing:
            raise ValueError(f"no data for input(s) {', '.join(missing)}")
        return {n: batch[n] for n in self.input_names}

    def outputs(self, batch: dict[str, np.ndarray]) -> list[Any]:
        """Every output of one plain call, on the host (for the parity check, untimed)."""
        return list(self.session.run(None, self.feed(batch)))

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        feed = self.feed(batch)
        if variant in ("run", "copies"):
            run = self.session.run
            return lambda: run(None, feed)
        import onnxruntime as ort

        where = "cpu" if self.device == "cpu" else "cuda"
        binding = self.session.io_binding()
        values = {n: ort.OrtValue.ortvalue_from_numpy(x, where, 0) for n, x in feed.items()}
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for output in self.session.get_outputs():
            binding.bind_output(output.name, where)
        binding.synchronize_inputs()
        run_bound = self.session.run_with_iobinding
        synchronize = binding.synchronize_outputs

        def call() -> Any:
            run_bound(binding)
            synchronize()
            return binding  # outputs stay where they were bound; copy_outputs_to_cpu() reads them

        call.keep_alive = values  # type: ignore[attr-defined]  # bound inputs must outlive us
        return call

    def close(self) -> None:
        self.session = None
