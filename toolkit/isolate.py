"""Run one step in a fresh child process with a timeout; a crash or hang costs that step only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import forking
from toolkit.errors import STORAGE_EXIT, STORAGE_SAID, StorageError
from toolkit.results import Record


@dataclass(frozen=True)
class ChildResult:
    records: list[Record]
    failure: str | None  # why the child did not finish cleanly, None when it did
    bad_input: str | None = None  # the child found the user's file or data unusable


# The pools of OpenMP and the BLAS libraries, sized from the environment when they load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def code_path() -> list[str]:
    """The folders deploybench's packages were imported from here: on a cluster node, the copy
    the driver shipped (a Ray `runtime_env`), which the child must run too."""
    import exporters
    import toolkit

    return list(dict.fromkeys(str(Path(m.__file__).resolve().parent.parent)
                              for m in (toolkit, exporters) if m.__file__))


# A serving step's OpenMP threads (PyTorch, scikit-learn) do not spin while they wait, as
# ONNX Runtime's do not there: workers share the cores. OpenMP reads this when it loads.
NO_SPINNING = {"OMP_WAIT_POLICY": "PASSIVE"}


def _child_env(threads: int, spinning: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    if not spinning:
        env.update(NO_SPINNING)
    env["PYTHONPATH"] = os.pathsep.join([*code_path(), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def _log_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _tail(path: Path, lines: int = 6) -> str:
    return " | ".join(_log_lines(path)[-lines:])


VMSTAT = Path("/proc/vmstat")


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed since boot (Linux's
    `oom_kill` in /proc/vmstat, a memory cgroup's limit counted too); None where it is not
    kept."""
    try:
        for line in VMSTAT.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _spinning(spec: Mapping[str, Any]) -> bool:
    """Whether the child's runtimes may spin-wait: not a serving child's (a spinning thread
    would take a core from the pool's other threads), unless its settings ask for it (in a
    lockstep round, every option's: ONNX Runtime's spinning is set per session anyway)."""
    task = spec.get("task")
    if task == "lockstep":
        options = spec.get("options") or ()
        return bool(options) and all((o.get("settings") or {}).get("spinning") for o in options)
    return task != "scenario" or bool((spec.get("settings") or {}).get("spinning"))


def run_child(
    spec: Mapping[str, Any], workdir: Path, *, timeout_s: float, threads: int, name: str
) -> ChildResult:
    """Run `python -m toolkit.worker` on `spec`; its log is kept as `workdir/logs/<name>.log`."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with tempfile.TemporaryDirectory(prefix="deploybench-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        out_path = Path(tmp) / "records.jsonl"
        spec_path.write_text(json.dumps(dict(spec)), encoding="utf-8")
        env = _child_env(threads, spinning=_spinning(spec))
        killed_before = oom_kills()
        forked = _run_forked(spec, spec_path, out_path, log_path, workdir, timeout_s, env,
                             killed_before)
        if forked is not None:
            records, bad_input = _read_records(out_path)
            return ChildResult(records, bad_input or forked.failure, bad_input)
        with log_path.open("w", encoding="utf-8") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "toolkit.worker", str(spec_path), str(out_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
                cwd=workdir,  # not the caller's folder: a checkout there would shadow the code
            )
            try:
                code = child.wait(timeout=timeout_s)
                failure = None
            except subprocess.TimeoutExpired:
                _kill(child)
                failure = f"timed out after {timeout_s:g} s (raise --timeout); log: {log_path}"
            except BaseException:  # Ctrl-C: do not leave the child running
                _kill(child)
                raise
            if failure is None and code != 0:  # out of the try: it ended, nothing to kill
                failure = _describe_exit(code, log_path, killed_before)
        records, bad_input = _read_records(out_path)
    if bad_input:
        failure = bad_input
    return ChildResult(records=records, failure=failure, bad_input=bad_input)


@dataclass(frozen=True)
class _Ended:
    failure: str | None


def _run_forked(spec: Mapping[str, Any], spec_path: Path, out_path: Path, log_path: Path,
                workdir: Path, timeout_s: float, env: Mapping[str, str],
                killed_before: int | None = None) -> _Ended | None:
    """The step run in a child forked from a server that holds its runtime's import
    (`toolkit.forkserver`); None where no server can take it (then it is spawned)."""
    runner = forking.runner_of(spec)
    if runner is None:
        return None
    server = forking.server_for(runner, env, workdir)
    if server is None:
        return None
    try:
        pid = server.start(spec_path, out_path, log_path, workdir)
    except forking.ServerGone:
        forking.drop(server)
        return None
    except BaseException:  # Ctrl-C while it forks: the server and any child it made go
        forking.drop(server)  # (a child dies with its server)
        raise
    try:
        code = server.wait(timeout_s)
        if code is None:
            _kill_group(pid)
            if server.wait(30.0) is None:
                forking.drop(server)
            return _Ended(f"timed out after {timeout_s:g} s (raise --timeout); log: {log_path}")
    except forking.ServerGone:
        _kill_group(pid)
        forking.drop(server)
        return _Ended(f"the process it was forked from ended (log: {log_path})")
    except BaseException:  # Ctrl-C: do not leave the child running
        _kill_group(pid)
        forking.drop(server)
        raise
    # What the child left in its group (a pool's worker processes). Its own pid, reaped by now,
    # may already be another process's: only the group is signalled.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return _Ended(None if code == 0 else _describe_exit(code, log_path, killed_before))


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):  # the group, or the child before it made its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def _kill(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.wait()


def _describe_exit(code: int, log_path: Path, killed_before: int | None = None) -> str:
    """Why a child ended with `code`; StorageError where it could not write for want of space
    (the run stops there, and --resume makes the step again). `killed_before`: the kernel's
    count of out-of-memory kills when the child started (`oom_kills`), which tells a SIGKILL
    for memory from another's."""
    if code == STORAGE_EXIT:
        said = [line for line in _log_lines(log_path) if line.startswith(STORAGE_SAID)]
        raise StorageError(said[-1][len(STORAGE_SAID):] if said else
                           f"a child could not write its files: the disk under "
                           f"{log_path.parent.parent} or the temporary folder is full or "
                           f"read-only; free space there, then --resume goes on")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = f"child process killed by {name}"
        if name == "SIGKILL":
            what += _why_killed(killed_before, oom_kills())
    else:
        what = f"child process exited with code {code}"
    tail = _tail(log_path)
    return f"{what}: {tail} (log: {log_path})" if tail else f"{what} (log: {log_path})"


def _why_killed(before: int | None, after: int | None) -> str:
    if before is None or after is None:
        return " (out of memory? this system does not count the kernel's out-of-memory kills)"
    if after > before:
        return (" by the kernel's out-of-memory killer: the machine, or the memory limit of "
                "the container or cgroup it ran in, ran out of memory (a smaller batch size, "
                "fewer workers, or more memory)")
    return (" (not by the kernel's out-of-memory killer, which killed nothing meanwhile: "
            "another process, a memory watchdog or a person sent it)")


def _read_records(path: Path) -> tuple[list[Record], str | None]:
    if not path.exists():
        return [], None
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            payload = json.loads(line)
            if "bad_input" in payload:
                return records, str(payload["bad_input"])
            records.append(Record.from_dict(payload))
        except (json.JSONDecodeError, TypeError, ValueError):
            break  # a line cut short by a crash: everything before it stands
    return records, None
