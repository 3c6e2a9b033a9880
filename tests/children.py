"""Check scripts run as children of their own (one framework per process), started together so
that their imports overlap on the machine's cores (TensorFlow takes about 10 s to import here,
torch about 5 s), and read back when a test asks for one."""

from __future__ import annotations

import os
import shutil
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
        try:
            for name, command in commands.items():
                out, err = self.folder / f"{name}.out", self.folder / f"{name}.err"
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    process = subprocess.Popen(list(command), stdout=stdout, stderr=stderr,
                                               env={**os.environ, **(env or {})})
                self.started[name] = (process, out, err)
        except BaseException:  # the ones already started are not left behind
            self.close()
            raise

    def result(self, name: str) -> subprocess.CompletedProcess:
        process, out, err = self.started[name]
        late = ""
        try:
            process.wait(self.timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            late = f"\n(killed: still running {self.timeout_s:g} s after it was asked for)"
        return subprocess.CompletedProcess(process.args, process.returncode,
                                           out.read_text(errors="replace"),
                                           err.read_text(errors="replace") + late)

    def close(self) -> None:
        for process, *_ in self.started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
