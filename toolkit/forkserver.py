"""A warm process that has imported a runtime once and forks a fresh child for each step.

Importing TensorFlow takes about 10 s on this project's 2-core machine, PyTorch about 5 s, and
a run starts a child per case per round: the quick suite spent over 100 s of its 300 s
importing. A fork server imports the runtime once (`RUNNERS[name].import_framework`, the same
call a measuring child times), then forks a child per step; the child runs `toolkit.worker`'s
`main` as a spawned one would, with its own log, session and process group. What it does not
redo is the import: a measuring child reports the import time the server measured
(`preloaded_import_seconds`, one figure for the run; its record says so).

Protocol, one JSON object per line: the server says {"ready": ..., "import_seconds": s}; each
request {"spec", "out", "log", "cwd"} is answered {"pid": p} when the child starts and
{"status": code} when it ends (a negative code: killed by that signal). The server ends when
its standard input closes: the process that started it is gone.

Servers are kept per (runtime, threads) in the process that asks (`ForkServers`); one that dies
is replaced, and one that cannot start means a spawned child, so a step never fails for it.
DEPLOYBENCH_FORK=0 turns the servers off: every child is spawned.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRELOADED: dict[str, float] = {}  # runner name -> import seconds, in a forked child


def preloaded_import_seconds(runner: str) -> float | None:
    """In a child forked from a server that imported `runner`'s runtime: the seconds that import
    took there; None in a spawned child."""
    return PRELOADED.get(runner)


def _child(request: dict[str, Any], server: int) -> int:
    """In the forked child: become a fresh step process, run the step, return its exit code."""
    os.setsid()
    _die_with(server)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    _trim_heap()
    random.seed()  # not the server's state: each child draws its own
    import numpy as np

    np.random.seed()
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    from toolkit.worker import main

    return main([request["spec"], request["out"]])


def _die_with(server: int) -> None:
    """Be killed when the server dies (Linux), as the asker kills the server when it gives up
    on it: a child in a session of its own would otherwise outlive both."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != server:  # it died before the call above
        os._exit(1)


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc), so that a child's allocations
    show in its resident memory as a fresh process's would, instead of reusing pages the
    server's imports left resident."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def serve(runner: str) -> None:
    """The server's loop (see the module's text). Replies go to a copy of the standard output
    taken first; the standard output itself then points at the standard error, so whatever an
    import prints cannot be read as a reply."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    from toolkit.runners import RUNNERS
    from toolkit.timing import time_once

    seconds = time_once(RUNNERS[runner].import_framework)
    PRELOADED[runner] = seconds
    import toolkit.steps  # noqa: F401  the step code every child runs

    _trim_heap()
    reply.write(json.dumps({"ready": runner, "import_seconds": seconds}) + "\n")
    reply.flush()
    server = os.getpid()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                reply.close()
                code = _child(request, server)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m toolkit.forkserver RUNNER")
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):  # the asker is gone
        serve(sys.argv[1])


if __name__ == "__main__":  # run as the module proper, so a child finds PRELOADED there
    from toolkit import forkserver

    forkserver.main()


# ----- the asking side (`toolkit.isolate.run_child`) -----

STARTUP_TIMEOUT_S = 300.0  # a server whose import takes longer is given up: children spawn
FORKED_TASKS = ("build", "build_file", "derive", "measure", "scenario")


def runner_of(spec: Mapping[str, Any]) -> str | None:
    """The runtime a step's child imports first, whose import a server can hold; None for a step
    that is always spawned."""
    task = spec.get("task")
    if task not in FORKED_TASKS:
        return None
    if task in ("measure", "scenario"):
        return str(spec.get("runner"))
    if task == "derive":
        return "onnxruntime"
    framework = spec.get("framework") or str(spec.get("workload", "")).split("/", 1)[0]
    return f"native_{framework}" if framework else None


def enabled() -> bool:
    return os.environ.get("DEPLOYBENCH_FORK", "1") != "0"


class ServerGone(Exception):
    """The server died, or never became ready: spawn the child instead."""


class _Lines:
    """Lines from a pipe, each read within a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def read(self, timeout_s: float | None) -> dict[str, Any] | None:
        """The next line as JSON; None when `timeout_s` ran out; ServerGone at end of file or
        on a line that is not a reply."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise ServerGone("the fork server ended")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            found = json.loads(line)
        except ValueError:
            raise ServerGone(f"the fork server said something else: {line[:200]!r}") from None
        if not isinstance(found, dict):
            raise ServerGone(f"the fork server said something else: {line[:200]!r}")
        return found


class Server:
    """One fork server: a runtime imported once, a child forked per step."""

    def __init__(self, runner: str, env: Mapping[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "toolkit.forkserver", runner], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(env),
            start_new_session=True, cwd=cwd)
        assert self.process.stdout is not None and self.process.stdin is not None
        self.lines = _Lines(self.process.stdout.fileno())
        try:
            ready = self.lines.read(STARTUP_TIMEOUT_S)
        except (ServerGone, ValueError):
            ready = None
        if not ready or "ready" not in ready:
            self.close()
            raise ServerGone(f"the {runner} fork server did not start")

    def start(self, spec: Path, out: Path, log: Path, cwd: Path) -> int:
        """Fork a child for one step; its pid."""
        assert self.process.stdin is not None
        request = {"spec": str(spec), "out": str(out), "log": str(log), "cwd": str(cwd)}
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            answer = self.lines.read(STARTUP_TIMEOUT_S)
        except (OSError, ValueError) as exc:
            raise ServerGone(str(exc)) from None
        if not answer or not isinstance(answer.get("pid"), int):
            raise ServerGone(f"the fork server did not fork ({answer!r})")
        return answer["pid"]

    def wait(self, timeout_s: float | None) -> int | None:
        """The child's exit code (negative: the signal that ended it); None on timeout."""
        answer = self.lines.read(timeout_s)
        if answer is not None and not isinstance(answer.get("status"), int):
            raise ServerGone(f"the fork server said {answer!r}, not how the child ended")
        return None if answer is None else int(answer["status"])

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()


_SERVERS: dict[tuple[str, tuple[tuple[str, str], ...]], Server] = {}
_FAILED: set[tuple[str, tuple[tuple[str, str], ...]]] = set()


def server_for(runner: str, env: Mapping[str, str], cwd: Path) -> Server | None:
    """This process's server for `runner` under `env` (started on first use), or None: turned
    off, or it could not start (then it is not tried again under that environment)."""
    if not enabled():
        return None
    key = (runner, tuple(sorted(env.items())))
    if key in _FAILED:
        return None
    server = _SERVERS.get(key)
    if server is not None and server.process.poll() is None:
        return server
    try:
        server = _SERVERS[key] = Server(runner, env, cwd)
    except (ServerGone, OSError):
        _SERVERS.pop(key, None)
        _FAILED.add(key)
        return None
    return server


def drop(server: Server) -> None:
    """Stop a server that is in an unknown state (a child timed out, Ctrl-C)."""
    for key, found in list(_SERVERS.items()):
        if found is server:
            del _SERVERS[key]
    server.close()


@atexit.register
def close_all() -> None:
    for server in list(_SERVERS.values()):
        server.close()
    _SERVERS.clear()
