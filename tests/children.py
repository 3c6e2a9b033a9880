"""Check scripts run as children of their own (one framework per process), started together so
that their imports overlap on the machine's cores (TensorFlow takes about 10 s to import here,
torch about 5 s), and read back when a test asks for one."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path


class Children:
    """Children started at once, each writing its output to files (never a pipe that fills up
    while another child is waited for)."""

    def __init__(self, commands: Mapping[str, Sequence[str]], env: Mapping[str, str] | None = None,
                 timeout_s: float = 300.0) -> None:
        self.timeout_s = timeout_s
        self.folder = Path(tempfile.mkdtemp(prefix="deploybench-children-"))
        self.started: dict[str, tuple[subprocess.Popen, Path, Path]] = {}
        for name, command in commands.items():
            out, err = self.folder / f"{name}.out", self.folder / f"{name}.err"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(list(command), stdout=stdout, stderr=stderr,
                                           env={**os.environ, **(env or {})})
            self.started[name] = (process, out, err)

    def result(self, name: str) -> subprocess.CompletedProcess:
        process, out, err = self.started[name]
        try:
            process.wait(self.timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return subprocess.CompletedProcess(process.args, process.returncode,
                                           out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))

    def close(self) -> None:
        for process, out, err in self.started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)
        self.folder.rmdir()
