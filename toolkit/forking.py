"""Forking steps' children from warm servers: the asking side (`toolkit.isolate.run_child`).

A server (`toolkit.forkserver`, a process of its own) imports a runtime once and forks a child
per step. This process keeps one server per (runtime, environment) (`server_for`); one that
dies is replaced, and one that cannot start means a spawned child, so a step never fails for
it. DEPLOYBENCH_FORK=0 turns the servers off: every child is spawned.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 300.0  # a server whose import takes longer is given up: children spawn
FORKED_TASKS = ("build", "build_file", "derive", "measure", "scenario", "lockstep")


def runner_of(spec: Mapping[str, Any]) -> str | None:
    """The runtime a step's child imports first, whose import a server can hold; None for a step
    that is always spawned."""
    task = spec.get("task")
    if task not in FORKED_TASKS:
        return None
    if task in ("measure", "scenario"):
        return str(spec.get("runner"))
    if task == "lockstep":  # one runtime for every option, or a spawned child
        runners = {str(o.get("runner")) for o in spec.get("options") or ()}
        return runners.pop() if len(runners) == 1 else None
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
